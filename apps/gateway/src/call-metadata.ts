/** Query keys the gateway consumes itself and never passes to providers or logs. */
const RESERVED_QUERY_KEYS = new Set(['token']);

/** The connect query string as call metadata (last value wins for repeated keys). */
export function callMetadata(url: string): Record<string, string> {
  const query = url.includes('?') ? url.slice(url.indexOf('?') + 1) : '';
  const metadata: Record<string, string> = {};
  for (const [key, value] of new URLSearchParams(query)) {
    if (!RESERVED_QUERY_KEYS.has(key)) metadata[key] = value;
  }
  return metadata;
}
