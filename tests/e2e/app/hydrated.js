'use client';

import { useEffect, useState } from 'react';

// Server-rendered as "no"; only the browser's JavaScript can turn it to "yes".
export default function Hydrated() {
  const [hydrated, setHydrated] = useState(false);
  useEffect(() => setHydrated(true), []);
  return (
    <p id="js-status" data-hydrated={hydrated ? 'yes' : 'no'}>
      client JavaScript ran: {hydrated ? 'yes' : 'no'}
    </p>
  );
}
