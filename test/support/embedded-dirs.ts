import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';

/** Temporary directories of a test file (mode 0700, as mkdtemp makes them), removed at its end. */
export class TemporaryDirs {
  readonly #dirs: string[] = [];

  make(prefix: string): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    this.#dirs.push(dir);
    return dir;
  }

  /**
   * A system directory as an administrator would set up: enterable by the embedded server's
   * account (rulebook changes the mode only of directories it creates).
   */
  system(): string {
    const dir = this.make('rulebook-system-');
    fs.chmodSync(dir, 0o755);
    return dir;
  }

  removeAll(): void {
    for (const dir of this.#dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** The first column of the first row of `sql`, on a connection of its own. */
export async function queryOne(url: string, sql: string): Promise<unknown> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return Object.values((await client.query(sql)).rows[0] as object)[0];
  } finally {
    await client.end();
  }
}
