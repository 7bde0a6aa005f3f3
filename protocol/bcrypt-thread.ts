// The worker thread that checks passwords against bcrypt hashes (see
// bcrypt-checker.ts): bcrypt is slow by design, and in the daemon's one
// thread each check would stall atop and every other client for its ~80 ms.
import { parentPort } from 'node:worker_threads';
import bcrypt from 'bcryptjs';

parentPort!.on('message', ({ id, password, hash }: { id: number; password: string; hash: string }) => {
  const started = performance.now();
  let right: boolean | null;
  try {
    right = bcrypt.compareSync(password, hash);
  } catch {
    right = null; // a hash bcryptjs refuses (checked when the file is read: never expected)
  }
  parentPort!.postMessage({ id, right, ms: performance.now() - started });
});
