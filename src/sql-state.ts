/**
 * The SQLSTATE of an error PostgreSQL reported, or undefined for anything else. Errors are matched
 * by this code, never by their text. A Node system error also has a `code` (ECONNRESET, and EPIPE
 * even has five capitals), but it is not a SQLSTATE: it carries a `syscall`, a server error does not.
 */
export function sqlState(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const { code, syscall } = error as { code?: unknown; syscall?: unknown };
  return typeof code === 'string' && SQLSTATE.test(code) && syscall === undefined ? code : undefined;
}

const SQLSTATE = /^[0-9A-Z]{5}$/;
