// Large answers without blocking the daemon: a listing's rows are described
// and encoded a chunk at a time, with a turn of the event loop between
// chunks, so that a /v1/processes of 100,000 rows never stops atop's answers
// or the other clients for longer than one chunk takes.
import { setImmediate as nextTurn } from 'node:timers/promises';

/** An answer whose `rows` go under `key` after the `head` fields; each row is described only when it is encoded. */
export class Listing<Row = unknown> {
  constructor(
    readonly head: Record<string, unknown>,
    readonly key: string,
    readonly rows: readonly Row[],
    readonly describe: (row: Row) => unknown,
  ) {}
}

/** Rows described between two turns of the event loop (~2-4 ms for processes). */
const ROWS_PER_CHUNK = 250;

/** Told the milliseconds each chunk took to build (the client's time share is charged them). */
export type Spent = (ms: number) => void;

/** The described rows, a chunk per turn of the event loop. */
async function describeRows<Row>(listing: Listing<Row>, spent: Spent): Promise<unknown[]> {
  const described: unknown[] = [];
  for (let start = 0; start < listing.rows.length; start += ROWS_PER_CHUNK) {
    if (start > 0) await nextTurn();
    const started = performance.now();
    const end = Math.min(start + ROWS_PER_CHUNK, listing.rows.length);
    for (let i = start; i < end; i++) described.push(listing.describe(listing.rows[i]!));
    spent(performance.now() - started);
  }
  return described;
}

/** The whole answer as a plain object (for msgpack, which has no streaming array), built a chunk per turn. */
export async function plainBody(body: unknown, extra: Record<string, unknown> = {}, spent: Spent = () => {}): Promise<unknown> {
  if (!(body instanceof Listing)) return { ...extra, ...(body as object) };
  return { ...extra, ...body.head, [body.key]: await describeRows(body, spent) };
}

/**
 * The answer as JSON text in pieces: `extra` fields first, then the head,
 * then the rows, a chunk per piece and per turn of the event loop (the
 * caller writes each piece before asking for the next: memory stays one
 * chunk whatever the number of rows).
 */
export async function* jsonPieces(body: unknown, extra: Record<string, unknown> = {}, spent: Spent = () => {}): AsyncGenerator<string> {
  if (!(body instanceof Listing)) {
    yield JSON.stringify({ ...extra, ...(body as object) });
    return;
  }
  const head = JSON.stringify({ ...extra, ...body.head, [body.key]: [] });
  yield head.slice(0, -2); // everything but the empty array's "]" and the object's "}"
  for (let start = 0; start < body.rows.length; start += ROWS_PER_CHUNK) {
    if (start > 0) await nextTurn();
    const started = performance.now();
    const end = Math.min(start + ROWS_PER_CHUNK, body.rows.length);
    let piece = '';
    for (let i = start; i < end; i++) piece += (i > 0 ? ',' : '') + JSON.stringify(body.describe(body.rows[i]!));
    spent(performance.now() - started);
    yield piece;
  }
  yield ']}';
}
