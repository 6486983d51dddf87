// What both TypeScript plugins share: JSON values, the body as JSON, JSON pointers (RFC
// 6901), the equality the Rust plugins use, and the gateway's "not implemented" marker.

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** Logged at debug level with the neutral result: "this hook does nothing" (wit/). */
export const NOT_IMPLEMENTED = 'hookgate:hook-not-implemented';

export function bodyJson(body: Uint8Array): Json {
  try {
    return JSON.parse(new TextDecoder().decode(body)) as Json;
  } catch (e) {
    throw `the body is not JSON: ${String(e)}`;
  }
}

/** The value at `path` in `doc`, or `undefined` when there is none. */
export function pointer(doc: Json, path: string): Json | undefined {
  if (path === '') return doc;
  if (!path.startsWith('/')) return undefined;
  let current: Json | undefined = doc;
  for (const raw of path.slice(1).split('/')) {
    const token = raw.replaceAll('~1', '/').replaceAll('~0', '~');
    if (Array.isArray(current)) {
      if (!/^(0|[1-9][0-9]*)$/.test(token)) return undefined;
      current = current[Number(token)];
    } else if (current !== null && typeof current === 'object') {
      current = Object.prototype.hasOwnProperty.call(current, token) ? current[token] : undefined;
    } else {
      return undefined;
    }
    if (current === undefined) return undefined;
  }
  return current;
}

/** Structural equality, where `100` and `100.0` are the same number (as in JSON). */
export function same(a: Json, b: Json): boolean {
  if (a === b) return true;
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((v, i) => same(v, b[i] as Json));
  }
  if (a !== null && b !== null && typeof a === 'object' && typeof b === 'object') {
    const keys = Object.keys(a);
    return keys.length === Object.keys(b).length && keys.every((k) => k in b && same(a[k] as Json, b[k] as Json));
  }
  return false;
}
