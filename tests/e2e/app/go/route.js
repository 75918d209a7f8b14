import { NextResponse } from 'next/server';

export const dynamic = 'force-dynamic';

// An absolute redirect built from the request, as apps do after a login or a
// form post. Next.js 14.2 gives route handlers request.url without the
// basePath and with the app's own host (http://localhost:PORT/...): the
// basePath is added here, the host is the gateway's to rewrite.
export function GET(request) {
  return NextResponse.redirect(new URL(`${process.env.APP_BASE_PATH}/target`, request.url));
}
