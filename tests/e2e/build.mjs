// Builds the app twice (admin-portal at /, kline-service under /kline), each
// into its own dist dir, skipping a build whose inputs have not changed: the
// hash of the sources, the lock file and the build's env is kept in
// <distDir>/e2e-build.hash and compared first.
//
// Usage: node build.mjs        (prints one line per app: built | cached)
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

export const APPS = [
  { name: 'admin-portal', basePath: '', distDir: '.next-admin' },
  { name: 'kline-service', basePath: '/kline', distDir: '.next-kline' },
];

function files(dir) {
  return readdirSync(join(here, dir)).sort().flatMap((f) => {
    const rel = join(dir, f);
    return statSync(join(here, rel)).isDirectory() ? files(rel) : [rel];
  });
}

function inputHash(app) {
  const h = createHash('sha256');
  h.update(JSON.stringify(app));
  for (const f of [...files('app'), 'next.config.js', 'package-lock.json']) {
    h.update(f).update('\0').update(readFileSync(join(here, f))).update('\0');
  }
  return h.digest('hex');
}

for (const app of APPS) {
  const hashFile = join(here, app.distDir, 'e2e-build.hash');
  const hash = inputHash(app);
  if (existsSync(hashFile) && readFileSync(hashFile, 'utf8') === hash) {
    console.log(`${app.name}: cached (${app.distDir})`);
    continue;
  }
  const started = Date.now();
  execFileSync(process.execPath, [join(here, 'node_modules/next/dist/bin/next'), 'build'], {
    cwd: here,
    stdio: ['ignore', 'inherit', 'inherit'],
    env: {
      ...process.env,
      APP_NAME: app.name,
      BASE_PATH: app.basePath,
      NEXT_DIST_DIR: app.distDir,
      NEXT_TELEMETRY_DISABLED: '1',
    },
  });
  writeFileSync(hashFile, hash);
  console.log(`${app.name}: built in ${((Date.now() - started) / 1000).toFixed(1)} s (${app.distDir})`);
}
