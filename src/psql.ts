import { spawn } from 'node:child_process';

/**
 * Runs psql on `url` with the user's arguments and the terminal, resolving to psql's exit code.
 * The URL goes to psql without its password, which travels in PGPASSWORD instead, so that it does
 * not show in `ps`; the rest of the URL (host, port, query parameters such as sslmode) is libpq's
 * to read, as it is written.
 */
export function runPsql(url: string, args: readonly string[]): Promise<number | 'not installed'> {
  const parsed = new URL(url);
  const password = decodeURIComponent(parsed.password);
  parsed.password = '';
  const connection = {
    env: password === '' ? {} : { PGPASSWORD: password },
    args: [`--dbname=${parsed.toString()}`],
  };
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
