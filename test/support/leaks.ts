/**
 * What a test file left running, gathered while it runs and reported by leak-check.ts after its last
 * hook. Setup files and test files share this module: they run in the same worker.
 */
export interface DatabaseLeak {
  readonly database: string;
  readonly connections: readonly string[];
}

const databaseLeaks: DatabaseLeak[] = [];
const openDatabases = new Map<string, () => Promise<DatabaseLeak | null>>();

/** Called by createTestDatabase: `check` lists connections to it from anyone but the checker. */
export function trackDatabase(name: string, check: () => Promise<DatabaseLeak | null>): void {
  openDatabases.set(name, check);
}

/** Called by drop(), which found these connections still open after ending the test's own pool. */
export function recordDatabaseLeak(leak: DatabaseLeak): void {
  databaseLeaks.push(leak);
}

export function untrackDatabase(name: string): void {
  openDatabases.delete(name);
}

/** Leaks recorded at drop() and connections to databases the file never dropped. */
export async function databaseLeaksSoFar(): Promise<DatabaseLeak[]> {
  const found = [...databaseLeaks];
  for (const check of openDatabases.values()) {
    const leak = await check();
    if (leak) found.push(leak);
  }
  return found;
}
