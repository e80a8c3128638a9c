// Loads the native module. The node-gyp build (npm install) is the default;
// LIBNBD_BINDING names another .node file, e.g. the cmake-js build
// (build-cmake/Release/nbd.node).
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

function load(): NativeBinding {
  const override = process.env.LIBNBD_BINDING;
  if (override) return require(resolve(override)) as NativeBinding;
  const root = packageRoot();
  const candidates = ['build/Release/nbd.node', 'build/Debug/nbd.node', 'build-cmake/Release/nbd.node'];
  for (const c of candidates) {
    const p = join(root, c);
    if (existsSync(p)) return require(p) as NativeBinding;
  }
  throw new Error(
    'libnbd: the native module is not built. Run `npm install` (needs libnbd-dev, pkg-config and a C++ compiler).',
  );
}

export const binding: NativeBinding = load();
