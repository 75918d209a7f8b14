export const dynamic = 'force-dynamic';

// Echoes what reached the app: method, URL and every request header.
export function GET(request) {
  return Response.json({
    app: process.env.APP_NAME || 'app',
    method: request.method,
    url: request.url,
    headers: Object.fromEntries(request.headers),
  });
}
