// GET /v1/history: who used the network, and when. Every parameter is
// validated (a bad one is a 400 naming it); a client that does not see every
// process gets its own workloads' rows only.
import { z } from 'zod';
import type { ApiRequest, ApiResult } from '../../protocol/http-answer.js';
import { durationSeconds, durationText, momentSeconds } from '../history/durations.js';
import { GROUPINGS, type HistoryAnswer, HistoryQueryError, MAX_STEPS } from '../history/history-query.js';
import { HistoryFileError } from '../history/history-store.js';
import type { History } from '../history/history.js';
import { HISTORY_COUNTERS, historyBytes, historyCalls } from '../history/schema.js';

/** The sort keys: a counter ("tcp.send.bytes"), the totals, or the group's name. */
const COUNTER_KEYS = HISTORY_COUNTERS.map((name) => name.replaceAll('_', '.'));
const SORT_KEYS = ['total.bytes', 'total.calls', 'name', ...COUNTER_KEYS] as const;

const moment = z.string().max(64).refine((text) => momentSeconds(text, 0) !== null, 'must be "now", a relative time such as "-2h" or "-7d", or an RFC 3339 date-time such as "2026-12-07T03:00:00Z"');
const HistoryParameters = z.strictObject({
  from: moment.default('-1h'),
  to: moment.default('now'),
  by: z.enum(GROUPINGS).default('workload'),
  step: z.string().max(16).refine((text) => durationSeconds(text) !== null, 'must be a duration such as "1m", "10m", "1h" or "1d"').optional(),
  uid: z.string().regex(/^\d{1,10}$/, 'must be a whole number').transform(Number).optional(),
  command: z.string().min(1).max(64).optional(),
  cgroup: z.string().min(1).max(4096).optional(),
  unit: z.string().min(1).max(256).optional(),
  container: z.string().min(1).max(128).optional(),
  pod: z.string().min(1).max(253).optional(),
  namespace: z.string().min(1).max(253).optional(),
  sort: z.enum(SORT_KEYS).default('total.bytes'),
  order: z.enum(['asc', 'desc']).default('desc'),
  limit: z.string().regex(/^\d{1,4}$/, 'must be a whole number').transform(Number).pipe(z.number().min(1, 'must be at least 1').max(1000)).default(10),
});

function badRequest(field: string, message: string): ApiResult {
  return { status: 400, body: { error: `invalid parameter '${field}': ${message}`, field } };
}

/** The 8 counters as the API's other answers nest them. */
function nested(counters: readonly number[]) {
  const pair = (at: number) => ({ calls: counters[at]!, bytes: counters[at + 1]! });
  return { tcp: { send: pair(0), recv: pair(2) }, udp: { send: pair(4), recv: pair(6) } };
}

const iso = (seconds: number): string => new Date(seconds * 1000).toISOString();

export function historyRoute(history: History | null): (request: ApiRequest) => ApiResult {
  return (request) => {
    const parsed = HistoryParameters.safeParse(Object.fromEntries(request.query));
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      return issue.code === 'unrecognized_keys' ? badRequest(issue.keys.join(', '), 'unknown parameter') : badRequest(issue.path.join('.'), issue.message);
    }
    if (!history) return { status: 404, body: { error: 'history is off: the daemon runs with --no-history (config `history`)' } };
    if (request.validateOnly) return { status: 200, body: null };
    const parameters = parsed.data;
    const nowSeconds = Math.floor(Date.now() / 1000);
    const { sort } = parameters;
    let answer: HistoryAnswer;
    try {
      answer = history.query({
        fromSeconds: momentSeconds(parameters.from, nowSeconds)!,
        toSeconds: momentSeconds(parameters.to, nowSeconds)!,
        by: parameters.by,
        stepSeconds: parameters.step === undefined ? null : durationSeconds(parameters.step),
        filters: { uid: parameters.uid, command: parameters.command, cgroup: parameters.cgroup, unit: parameters.unit, container: parameters.container, pod: parameters.pod, namespace: parameters.namespace },
        sort: sort === 'total.bytes' ? 'bytes' : sort === 'total.calls' ? 'calls' : sort === 'name' ? 'name' : COUNTER_KEYS.indexOf(sort),
        order: parameters.order,
        limit: parameters.limit,
        onlyUid: request.visibility.seesAll ? null : request.visibility.uid,
      });
    } catch (err) {
      if (err instanceof HistoryQueryError) return badRequest(err.field, err.message);
      if (err instanceof HistoryFileError) return { status: 503, body: { error: `history cannot be read now: ${err.message}` } };
      throw err;
    }
    return {
      status: 200,
      body: {
        from: iso(momentSeconds(parameters.from, nowSeconds)!),
        to: iso(momentSeconds(parameters.to, nowSeconds)!),
        by: parameters.by,
        /** The tier the rows come from (its bucket length), the step of the series, and where the series starts and ends. */
        tier: durationText(answer.tierSeconds),
        step: durationText(answer.stepSeconds),
        stepSeconds: answer.stepSeconds,
        start: iso(answer.startSeconds),
        end: iso(answer.endSeconds),
        steps: (answer.endSeconds - answer.startSeconds) / answer.stepSeconds,
        maxSteps: MAX_STEPS,
        /** The groups given at most (past it, in `rest`): the limit asked for, or fewer when their series would be too long together. */
        limit: answer.limit,
        /** The order of the 8 counters in each step of a series. */
        seriesCounters: COUNTER_KEYS,
        scope: request.visibility.seesAll ? 'host' : 'own',
        groups: answer.groups.map((group) => ({
          ...group.key,
          counters: nested(group.counters),
          total: { bytes: historyBytes(group.counters), calls: historyCalls(group.counters) },
          series: group.series,
        })),
        rest: { groups: answer.rest.groups, counters: nested(answer.rest.counters) },
      },
    };
  };
}
