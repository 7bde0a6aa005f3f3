// Setup file (vitest.config.ts): after each test file, what it left running.
import { afterAll } from 'vitest';
import { stopLeftovers } from './leftovers.js';

afterAll(stopLeftovers);
