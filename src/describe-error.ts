import { sqlState } from './sql-state.js';

interface NetworkError {
  code?: string;
  address?: string;
  port?: number;
  hostname?: string;
}

/**
 * One line for any failure, never "undefined": pg reports a refused connection to a host with
 * several addresses as an AggregateError with an empty message, and a rejection need not be an Error.
 */
export function describeError(error: unknown): string {
  if (error instanceof AggregateError && error.errors.length > 0) {
    const parts = [...new Set(error.errors.map((each: unknown) => describeError(each)))];
    return parts.length === 1 ? parts[0]! : parts.join('; ');
  }
  if (error instanceof Error) {
    const network = error as Error & NetworkError;
    const where =
      network.address !== undefined
        ? `${network.address}${network.port ? `:${network.port}` : ''}`
        : network.hostname;
    switch (network.code) {
      case 'ECONNREFUSED':
        return `nothing accepts connections at ${where ?? 'the database address'}: start PostgreSQL there, or set DATABASE_URL to a running one (unset, rulebook uses its embedded PostgreSQL)`;
      case 'ENOTFOUND':
      case 'EAI_AGAIN':
        return `the database host ${where ?? ''} is not known: check the host in DATABASE_URL`;
      case 'ETIMEDOUT':
        return `connecting to ${where ?? 'the database'} timed out: check the host and port in DATABASE_URL and the firewall`;
    }
    switch (sqlState(error)) {
      case '28P01':
      case '28000':
        return `${error.message}: check the user and password in DATABASE_URL`;
      case '3D000':
        return `${error.message}: create it, or correct the database name in DATABASE_URL`;
    }
    const message = error.message.trim();
    if (message !== '') return message.split('\n')[0]!;
    return `${error.name}${network.code ? ` ${network.code}` : ''} without a message`;
  }
  if (error === undefined || error === null || String(error) === '') {
    return 'failed without saying why (a bug in rulebook: please report the command you ran)';
  }
  return typeof error === 'object' ? JSON.stringify(error) : String(error);
}
