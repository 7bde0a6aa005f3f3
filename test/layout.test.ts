// daemon/kernel/layout.ts must match bpf/netacct.h byte for byte: compile the header
// with cc and compare every size, offset and enum value.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { expect, test } from 'vitest';
import * as layout from '../daemon/kernel/layout.js';
import { RECORD_SIZE, RecordOffset } from '../protocol/netatop-record.js';
import { scratchDir } from './helpers/fixtures.js';

const expressions: Record<string, [number, string]> = {
  LAYOUT_VERSION: [layout.LAYOUT_VERSION, 'NA_LAYOUT_VERSION'],
  COUNTERS: [layout.COUNTERS, 'NA_COUNTERS'],
  COUNTERS_SIZE: [layout.COUNTERS_SIZE, 'sizeof(struct netacct_counters)'],
  OWNER_SIZE: [layout.OWNER_SIZE, 'sizeof(__u64)'],
  'SlotState.active': [layout.SlotState.active, 'NA_SLOT_ACTIVE'],
  'SlotState.exited': [layout.SlotState.exited, 'NA_SLOT_EXITED'],
  'SlotState.moved': [layout.SlotState.moved, 'NA_SLOT_MOVED'],
  'SlotState.claiming': [layout.SlotState.claiming, 'NA_SLOT_CLAIMING'],
  'Slot.size': [layout.Slot.size, 'sizeof(struct netacct_slot)'],
  'Slot.tgid': [layout.Slot.tgid, 'offsetof(struct netacct_slot, tgid)'],
  'Slot.uid': [layout.Slot.uid, 'offsetof(struct netacct_slot, uid)'],
  'Slot.startNs': [layout.Slot.startNs, 'offsetof(struct netacct_slot, start_ns)'],
  'Slot.comm': [layout.Slot.comm, 'offsetof(struct netacct_slot, comm)'],
  'Slot.commSize': [layout.Slot.commSize, 'sizeof(((struct netacct_slot *)0)->comm)'],
  'Slot.cgroupId': [layout.Slot.cgroupId, 'offsetof(struct netacct_slot, cgroup_id)'],
  'Slot.counters': [layout.Slot.counters, 'offsetof(struct netacct_slot, c)'],
  'PartKey.size': [layout.PartKey.size, 'sizeof(struct netacct_part_key)'],
  'PartKey.tgid': [layout.PartKey.tgid, 'offsetof(struct netacct_part_key, tgid)'],
  'PartKey.uid': [layout.PartKey.uid, 'offsetof(struct netacct_part_key, uid)'],
  'PeerOverflowKey.size': [layout.PeerOverflowKey.size, 'sizeof(struct netacct_peer_overflow_key)'],
  'PeerOverflowKey.tgid': [layout.PeerOverflowKey.tgid, 'offsetof(struct netacct_peer_overflow_key, tgid)'],
  'PeerOverflowKey.uid': [layout.PeerOverflowKey.uid, 'offsetof(struct netacct_peer_overflow_key, uid)'],
  'PeerOverflowKey.startNs': [layout.PeerOverflowKey.startNs, 'offsetof(struct netacct_peer_overflow_key, start_ns)'],
  'Share.overflow': [layout.Share.overflow, 'NA_SHARE_OVERFLOW'],
  'Share.unattributed': [layout.Share.unattributed, 'NA_SHARE_UNATTRIBUTED'],
  'Share.peers': [layout.Share.peers, 'NA_SHARE_PEERS'],
  'Share.peerOverflow': [layout.Share.peerOverflow, 'NA_SHARE_PEER_OVERFLOW'],
  'Share.exited': [layout.Share.exited, 'NA_SHARE_EXITED'],
  SHARES: [layout.SHARES, 'NA_SHARES'],
  HELD_SIZE: [layout.HELD_SIZE, 'sizeof(struct netacct_held)'],
  OTHERS_UID: [layout.OTHERS_UID, 'NA_OTHERS_UID'],
  'PartKey.startNs': [layout.PartKey.startNs, 'offsetof(struct netacct_part_key, start_ns)'],
  'PartKey.cgroupId': [layout.PartKey.cgroupId, 'offsetof(struct netacct_part_key, cgroup_id)'],
  'UnattributedKey.size': [layout.UnattributedKey.size, 'sizeof(struct netacct_unattributed_key)'],
  'UnattributedKey.uid': [layout.UnattributedKey.uid, 'offsetof(struct netacct_unattributed_key, uid)'],
  'UnattributedKey.cgroupId': [layout.UnattributedKey.cgroupId, 'offsetof(struct netacct_unattributed_key, cgroup_id)'],
  HOST_UID: [layout.HOST_UID, 'NA_HOST_UID'],
  'ProcId.size': [layout.ProcId.size, 'sizeof(struct netacct_proc_id)'],
  'ProcId.tgid': [layout.ProcId.tgid, 'offsetof(struct netacct_proc_id, tgid)'],
  'ProcId.startNs': [layout.ProcId.startNs, 'offsetof(struct netacct_proc_id, start_ns)'],
  'ProcInfo.size': [layout.ProcInfo.size, 'sizeof(struct netacct_proc_info)'],
  'ProcInfo.tgid': [layout.ProcInfo.tgid, 'offsetof(struct netacct_proc_info, tgid)'],
  'ProcInfo.uid': [layout.ProcInfo.uid, 'offsetof(struct netacct_proc_info, uid)'],
  'ProcInfo.startNs': [layout.ProcInfo.startNs, 'offsetof(struct netacct_proc_info, start_ns)'],
  'ProcInfo.cgroupId': [layout.ProcInfo.cgroupId, 'offsetof(struct netacct_proc_info, cgroup_id)'],
  'ProcInfo.comm': [layout.ProcInfo.comm, 'offsetof(struct netacct_proc_info, comm)'],
  'ProcInfo.commSize': [layout.ProcInfo.commSize, 'sizeof(((struct netacct_proc_info *)0)->comm)'],
  'Settings.size': [layout.Settings.size, 'sizeof(struct netacct_settings)'],
  'Settings.slotMask': [layout.Settings.slotMask, 'offsetof(struct netacct_settings, slot_mask)'],
  'Settings.countThreads': [layout.Settings.countThreads, 'offsetof(struct netacct_settings, count_threads)'],
  'Settings.threadMask': [layout.Settings.threadMask, 'offsetof(struct netacct_settings, thread_mask)'],
  'Settings.countPeers': [layout.Settings.countPeers, 'offsetof(struct netacct_settings, count_peers)'],
  'Settings.ephemeralLow': [layout.Settings.ephemeralLow, 'offsetof(struct netacct_settings, ephemeral_low)'],
  'Settings.ephemeralHigh': [layout.Settings.ephemeralHigh, 'offsetof(struct netacct_settings, ephemeral_high)'],
  'Settings.userShare': [layout.Settings.userShare, 'offsetof(struct netacct_settings, user_share)'],
  'Settings.othersShare': [layout.Settings.othersShare, 'offsetof(struct netacct_settings, others_share)'],
  'Settings.generation': [layout.Settings.generation, 'offsetof(struct netacct_settings, generation)'],
  'Control.size': [layout.Control.size, 'sizeof(struct netacct_control)'],
  'Control.generation': [layout.Control.generation, 'offsetof(struct netacct_control, generation)'],
  'PeerKey.size': [layout.PeerKey.size, 'sizeof(struct netacct_peer_key)'],
  'PeerKey.tgid': [layout.PeerKey.tgid, 'offsetof(struct netacct_peer_key, tgid)'],
  'PeerKey.remotePort': [layout.PeerKey.remotePort, 'offsetof(struct netacct_peer_key, remote_port)'],
  'PeerKey.localPort': [layout.PeerKey.localPort, 'offsetof(struct netacct_peer_key, local_port)'],
  'PeerKey.startNs': [layout.PeerKey.startNs, 'offsetof(struct netacct_peer_key, start_ns)'],
  'PeerKey.addr': [layout.PeerKey.addr, 'offsetof(struct netacct_peer_key, addr)'],
  'PeerKey.addrSize': [layout.PeerKey.addrSize, 'sizeof(((struct netacct_peer_key *)0)->addr)'],
  'PeerKey.uid': [layout.PeerKey.uid, 'offsetof(struct netacct_peer_key, uid)'],
  'Thread.tid': [layout.Thread.tid, 'offsetof(struct netacct_thread, tid)'],
  'Thread.tgid': [layout.Thread.tgid, 'offsetof(struct netacct_thread, tgid)'],
  'Thread.startNs': [layout.Thread.startNs, 'offsetof(struct netacct_thread, start_ns)'],
  'ThreadKey.size': [layout.ThreadKey.size, 'sizeof(struct netacct_thread_key)'],
  'ThreadKey.tid': [layout.ThreadKey.tid, 'offsetof(struct netacct_thread_key, tid)'],
  'ThreadKey.tgid': [layout.ThreadKey.tgid, 'offsetof(struct netacct_thread_key, tgid)'],
  'ThreadKey.startNs': [layout.ThreadKey.startNs, 'offsetof(struct netacct_thread_key, start_ns)'],
  'ThreadState.live': [layout.ThreadState.live, 'NA_THREAD_LIVE'],
  'ThreadState.exited': [layout.ThreadState.exited, 'NA_THREAD_EXITED'],
  'Thread.size': [layout.Thread.size, 'sizeof(struct netacct_thread)'],
  'Thread.processStartNs': [layout.Thread.processStartNs, 'offsetof(struct netacct_thread, process_start_ns)'],
  'Thread.comm': [layout.Thread.comm, 'offsetof(struct netacct_thread, comm)'],
  'Thread.commSize': [layout.Thread.commSize, 'sizeof(((struct netacct_thread *)0)->comm)'],
  'Thread.state': [layout.Thread.state, 'offsetof(struct netacct_thread, state)'],
  'Thread.counters': [layout.Thread.counters, 'offsetof(struct netacct_thread, c)'],
  'Family.ipv4': [layout.Family.ipv4, 'NA_IPV4'],
  'Family.ipv6': [layout.Family.ipv6, 'NA_IPV6'],
  'Protocol.tcp': [layout.Protocol.tcp, 'NA_TCP'],
  'Protocol.udp': [layout.Protocol.udp, 'NA_UDP'],
  'Direction.send': [layout.Direction.send, 'NA_SEND'],
  'Direction.recv': [layout.Direction.recv, 'NA_RECV'],
  'Kind.calls': [layout.Kind.calls, 'NA_CALLS'],
  'Kind.bytes': [layout.Kind.bytes, 'NA_BYTES'],
  'Stat.overflowFull': [layout.Stat.overflowFull, 'NA_STAT_OVERFLOW_FULL'],
  'Stat.exitedFull': [layout.Stat.exitedFull, 'NA_STAT_EXITED_FULL'],
  'Stat.noStorage': [layout.Stat.noStorage, 'NA_STAT_NO_STORAGE'],
  'Stat.slotsRetired': [layout.Stat.slotsRetired, 'NA_STAT_SLOTS_RETIRED'],
  'Stat.threadsFull': [layout.Stat.threadsFull, 'NA_STAT_THREADS_FULL'],
  'Stat.threadsExited': [layout.Stat.threadsExited, 'NA_STAT_THREADS_EXITED'],
  'Stat.unattributedFull': [layout.Stat.unattributedFull, 'NA_STAT_UNATTRIBUTED_FULL'],
  'Stat.lost': [layout.Stat.lost, 'NA_STAT_LOST'],
  'Stat.overShare': [layout.Stat.overShare, 'NA_STAT_OVER_SHARE'],
  'Stat.peersFull': [layout.Stat.peersFull, 'NA_STAT_PEERS_FULL'],
  'Stat.peersLost': [layout.Stat.peersLost, 'NA_STAT_PEERS_LOST'],
  STATS: [layout.STATS, 'NA_STATS'],
  'NetatopCommand.probe': [layout.NetatopCommand.probe, 'NETATOP_PROBE'],
  'NetatopCommand.forceGc': [layout.NetatopCommand.forceGc, 'NETATOP_FORCE_GC'],
  'NetatopCommand.emptyExit': [layout.NetatopCommand.emptyExit, 'NETATOP_EMPTY_EXIT'],
  'NetatopCommand.getcntExit': [layout.NetatopCommand.getcntExit, 'NETATOP_GETCNT_EXIT'],
  'NetatopCommand.getcntTgid': [layout.NetatopCommand.getcntTgid, 'NETATOP_GETCNT_TGID'],
  'NetatopCommand.getcntPid': [layout.NetatopCommand.getcntPid, 'NETATOP_GETCNT_PID'],
  NETATOP_COMMANDS: [layout.NETATOP_COMMANDS, 'NETATOP_COMMANDS'],
  RECORD_SIZE: [RECORD_SIZE, 'sizeof(struct netatop_task)'],
  'RecordOffset.id': [RecordOffset.id, 'offsetof(struct netatop_task, id)'],
  'RecordOffset.btime': [RecordOffset.btime, 'offsetof(struct netatop_task, btime)'],
  'RecordOffset.command': [RecordOffset.command, 'offsetof(struct netatop_task, command)'],
  'RecordOffset.commandSize': [RecordOffset.commandSize, 'sizeof(((struct netatop_task *)0)->command)'],
  'RecordOffset.counters': [RecordOffset.counters, 'offsetof(struct netatop_task, counters)'],
  'NetatopKind.process': [layout.NetatopKind.process, 'NETATOP_KIND_PROCESS'],
  'NetatopKind.thread': [layout.NetatopKind.thread, 'NETATOP_KIND_THREAD'],
  'NetatopAnswer.size': [layout.NetatopAnswer.size, 'sizeof(struct netatop_answer)'],
  'NetatopAnswer.task': [layout.NetatopAnswer.task, 'offsetof(struct netatop_answer, task)'],
  'NetatopAnswer.uid': [layout.NetatopAnswer.uid, 'offsetof(struct netatop_answer, uid)'],
  'NetatopSettings.size': [layout.NetatopSettings.size, 'sizeof(struct netatop_settings)'],
  'NetatopSettings.allGid': [layout.NetatopSettings.allGid, 'offsetof(struct netatop_settings, all_gid)'],
};

test('daemon/kernel/layout.ts matches every size, offset and enum of bpf/netacct.h', () => {
  const dir = scratchDir('layout');
  const lines = Object.entries(expressions).map(
    ([name, [, expr]]) => `\tprintf("%s %lu\\n", "${name}", (unsigned long)(${expr}));`,
  );
  const source = `#include <stddef.h>\n#include <stdio.h>\n#include "netacct.h"\nint main(void)\n{\n${lines.join('\n')}\n\treturn 0;\n}\n`;
  fs.writeFileSync(path.join(dir, 'layout.c'), source);
  const bpfDir = path.join(import.meta.dirname, '..', 'bpf');
  execFileSync('cc', ['-I', bpfDir, '-o', path.join(dir, 'layout'), path.join(dir, 'layout.c')]);
  const fromHeader = Object.fromEntries(
    execFileSync(path.join(dir, 'layout'), { encoding: 'utf8' })
      .trim()
      .split('\n')
      .map((line) => {
        const [name, value] = line.split(' ');
        return [name!, Number(value)];
      }),
  );
  const fromTypeScript = Object.fromEntries(Object.entries(expressions).map(([name, [value]]) => [name, value]));
  expect(fromTypeScript).toEqual(fromHeader);
});

test('counter index follows the order the header documents', () => {
  const seen = new Set<number>();
  for (const family of [0, 1]) for (const protocol of [0, 1]) for (const direction of [0, 1]) for (const kind of [0, 1]) {
    seen.add(layout.counterIndex(family, protocol, direction, kind));
  }
  expect([...seen].sort((a, b) => a - b)).toEqual([...Array(layout.COUNTERS).keys()]);
  expect(layout.counterIndex(layout.Family.ipv6, layout.Protocol.udp, layout.Direction.recv, layout.Kind.bytes)).toBe(15);
  expect(layout.counterIndex(layout.Family.ipv4, layout.Protocol.tcp, layout.Direction.recv, layout.Kind.calls)).toBe(2);
});
