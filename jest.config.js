// Every suite runs once per driver (docs/architecture.md, "Drivers"): the `loop` project and the
// `thread` project differ only in LIBNBD_DRIVER, the default driver of the
// handles the tests make.
const common = {
  // Node's, with console output shown only for failing tests (quiet passing runs).
  testEnvironment: '<rootDir>/test/helpers/environment.js',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: '<rootDir>/test/tsconfig.json' }] },
};

/** @type {import('jest').Config} */
module.exports = {
  testTimeout: 30000,
  // Servers are real processes; two workers fit the 2-core machines.
  maxWorkers: 2,
  projects: ['loop', 'thread'].map((driver) => ({
    ...common,
    displayName: driver,
    setupFiles: [`<rootDir>/test/helpers/driver-${driver}.js`],
  })),
};
