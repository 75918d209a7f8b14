import Hydrated from './hydrated';

export default function Page() {
  return (
    <main>
      <h1 id="app-name">{process.env.APP_NAME || 'app'}</h1>
      <p>Served by Next.js behind pingora-gateway.</p>
      <Hydrated />
    </main>
  );
}
