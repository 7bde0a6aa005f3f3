// What a test file started and did not stop, stopped when the file ends
// (test/helpers/leftovers-hook.ts runs this after every file): a test that
// fails half-way leaves no daemon or child process behind. Tests still stop
// what they start; this is the net under them.
const stops = new Set<() => Promise<unknown> | unknown>();

/** Registers `stop` (idempotent) to run at the end of the file; returns a function that unregisters it. */
export function stopAtFileEnd(stop: () => Promise<unknown> | unknown): () => void {
  stops.add(stop);
  return () => stops.delete(stop);
}

export async function stopLeftovers(): Promise<void> {
  const pending = [...stops];
  stops.clear();
  await Promise.all(pending.map(async (stop) => stop()));
}
