export const dynamic = 'force-dynamic';

export function GET() {
  return Response.json({ status: 'ok', app: process.env.APP_NAME || 'app' });
}
