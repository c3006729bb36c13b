import { spawn } from 'node:child_process';

/**
 * Runs psql on `url` with the user's arguments and the terminal, resolving to psql's exit code.
 * The connection goes through libpq's environment variables, so the password does not show in
 * `ps`; a URL with query parameters (sslmode, ...) is passed whole instead.
 */
export function runPsql(url: string, args: readonly string[]): Promise<number | 'not installed'> {
  const parsed = new URL(url);
  const connection =
    parsed.search === ''
      ? {
          env: {
            PGHOST: parsed.hostname,
            PGPORT: parsed.port || '5432',
            PGUSER: decodeURIComponent(parsed.username),
            PGPASSWORD: decodeURIComponent(parsed.password),
            PGDATABASE: decodeURIComponent(parsed.pathname.slice(1)),
          },
          args: [],
        }
      : { env: {}, args: [`--dbname=${url}`] };
  // Ctrl-C belongs to psql (it cancels the running query); this process waits for psql to end.
  const ignore = () => {};
  process.on('SIGINT', ignore);
  return new Promise<number | 'not installed'>((resolve, reject) => {
    const child = spawn('psql', [...connection.args, ...args], {
      stdio: 'inherit',
      env: { ...process.env, ...connection.env },
    });
    child.once('error', (error: NodeJS.ErrnoException) =>
      error.code === 'ENOENT' ? resolve('not installed') : reject(error),
    );
    child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  }).finally(() => process.off('SIGINT', ignore));
}
