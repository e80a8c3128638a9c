// Loads the native module. LIBNBD_BINDING names a .node file (e.g. the
// cmake-js build, build-cmake/Release/nbd.node); otherwise node-gyp-build
// finds a compiled build/Release/nbd.node first (`npm install
// --build-from-source`, a checkout's build), then the package's prebuilt
// binary (prebuilds/linux-x64/libnbd.glibc.node); a checkout with only the
// cmake-js build loads that. A load that fails because of the system's
// libnbd says what to install, in one line (scripts/install-check.js).
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { NativeBinding } from '../typings/native';

function packageRoot(): string {
  let dir = __dirname;
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('libnbd: cannot find the package root above ' + __dirname);
    dir = up;
  }
  return dir;
}

function explained(root: string, error: unknown): Error {
  const { explainLoadError } = require(join(root, 'scripts/install-check.js')) as { explainLoadError(e: unknown): string | undefined };
  const line = explainLoadError(error);
  return line === undefined ? (error as Error) : new Error(line, { cause: error });
}

function load(): NativeBinding {
  const root = packageRoot();
  const override = process.env.LIBNBD_BINDING;
  try {
    if (override) return require(resolve(override)) as NativeBinding;
    const cmake = join(root, 'build-cmake/Release/nbd.node');
    const nodeGypBuild = require('node-gyp-build') as { (dir: string): unknown; resolve(dir: string): string };
    let file: string;
    try {
      file = nodeGypBuild.resolve(root);
    } catch (error) {
      if (!existsSync(cmake)) {
        throw new Error('libnbd: no native module for this platform: run `npm install --build-from-source` (needs libnbd-dev, pkg-config and a C++ compiler)', { cause: error });
      }
      file = cmake;
    }
    return require(file) as NativeBinding;
  } catch (error) {
    throw explained(root, error);
  }
}

export const binding: NativeBinding = load();
