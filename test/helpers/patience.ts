// How much longer to wait for something that will happen (a daemon ready, a
// test done): inside a guest kernel under QEMU's TCG (test/vm/kernel.sh sets
// NETACCT_TEST_EMULATED) every instruction is emulated, and the host's other
// suites take the same two cores (a guest suite's longest test, 51 s on an
// idle host). A wait, never a speed assertion; a hang fails 3 times later.
export const PATIENCE = process.env['NETACCT_TEST_EMULATED'] ? 3 : 1;
