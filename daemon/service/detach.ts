// `netacct detach`: stops counting while no daemon runs. The programs stay
// attached after a daemon stops (daemon/kernel/counting-generations.ts);
// this removes their pinned links, so that they detach. The maps stay: the
// next daemon starts from their counters. Refused while a daemon holds the
// pin directory (it would go on counting with programs no longer pinned).
import fs from 'node:fs';
import path from 'node:path';
import { detachExcept } from '../kernel/counting-generations.js';
import { lockPinDir } from '../kernel/pin-lock.js';

/** How long detaching waits for the kernel to free the links (it does so from a work queue). */
const DETACH_WAIT_MS = 30_000;

/** Detaches every generation of programs pinned under `pinDir`; how many there were. */
export function detachPinned(pinDir: string): number {
  if (!fs.existsSync(pinDir)) return 0;
  const lock = lockPinDir(pinDir);
  try {
    let detached = 0;
    for (const layout of fs.readdirSync(pinDir)) {
      if (/^v\d+$/.test(layout)) detached += detachExcept(path.join(pinDir, layout), null, DETACH_WAIT_MS);
    }
    return detached;
  } finally {
    lock.release();
  }
}
