// One source tree, built and started twice (see build.mjs and tests/e2e.rs):
//   admin-portal:  BASE_PATH unset,     dist dir .next-admin
//   kline-service: BASE_PATH="/kline",  dist dir .next-kline
// `next start` reads this file again, so it must get the same BASE_PATH and
// NEXT_DIST_DIR as the build it serves.
/** @type {import('next').NextConfig} */
const basePath = process.env.BASE_PATH || '';

module.exports = {
  basePath,
  // Route handlers see request.url and nextUrl without the basePath (Next.js
  // 14.2), so they need it spelled out to build their own URLs.
  env: { APP_BASE_PATH: basePath },
  distDir: process.env.NEXT_DIST_DIR || '.next',
  eslint: { ignoreDuringBuilds: true },
  poweredByHeader: false,
};
