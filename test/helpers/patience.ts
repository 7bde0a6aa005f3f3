// How much longer to wait for something that will happen (a daemon ready, a
// test done): inside a guest kernel under QEMU's TCG (test/vm/kernel.sh sets
// NETACCT_TEST_EMULATED) every instruction is emulated, and the host's other
// suites take the same two cores. A wait, never a speed assertion.
export const PATIENCE = process.env['NETACCT_TEST_EMULATED'] ? 4 : 1;
