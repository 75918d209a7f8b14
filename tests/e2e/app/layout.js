import './globals.css';

export const metadata = { title: 'gateway e2e' };

export default function RootLayout({ children }) {
  return (
    <html lang="en">
      <body>{children}</body>
    </html>
  );
}
