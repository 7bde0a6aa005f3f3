// Password checks against bcrypt hashes, off the daemon's thread: one worker
// thread, made at the first check, checks one password at a time in the order
// asked. At most MAX_WAITING checks wait: past them a check is refused at
// once (the caller answers 429), so guessers cannot queue up without bound.
import { Worker } from 'node:worker_threads';

const MAX_WAITING = 16;

/** A check's result, and the thread time it took (its client's to pay). */
export interface BcryptResult {
  right: boolean;
  ms: number;
}

export class BcryptChecker {
  private worker: Worker | null = null;
  private readonly waiting = new Map<number, { resolve: (result: BcryptResult) => void; reject: (err: Error) => void }>();
  private nextId = 0;
  private closed = false;

  /** Whether another check would be refused now. */
  get full(): boolean {
    return this.waiting.size >= MAX_WAITING;
  }

  /** Whether `password` is the one `hash` holds; throws when the checker is full, closed, or its thread failed. */
  compare(password: string, hash: string): Promise<BcryptResult> {
    if (this.closed) return Promise.reject(new Error('the password checker is closed'));
    if (this.full) return Promise.reject(new Error(`${MAX_WAITING} password checks are waiting already`));
    const worker = this.worker ?? this.start();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      worker.postMessage({ id, password, hash });
    });
  }

  private start(): Worker {
    const worker = new Worker(new URL('./bcrypt-thread.js', import.meta.url));
    worker.unref(); // never what keeps the daemon running
    worker.on('message', ({ id, right, ms }: { id: number; right: boolean | null; ms: number }) => {
      const check = this.waiting.get(id);
      this.waiting.delete(id);
      if (right === null) check?.reject(new Error('the hash is not one bcrypt takes'));
      else check?.resolve({ right, ms });
    });
    const fail = (err: Error): void => {
      if (this.worker === worker) this.worker = null; // the next check starts a new one
      for (const check of this.waiting.values()) check.reject(err);
      this.waiting.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`the password checking thread exited (${code})`)));
    this.worker = worker;
    return worker;
  }

  async close(): Promise<void> {
    this.closed = true;
    const worker = this.worker;
    this.worker = null;
    await worker?.terminate();
  }
}
