/**
 * A vitest setup file: a test file that leaves a server, socket, child process or database connection
 * behind fails in its last hook, naming what it left. graphile-worker's tests do the same for workers.
 */
import fs from 'node:fs';
import { afterAll } from 'vitest';
import { databaseLeaksSoFar } from './leaks.js';
import { waitFor } from './wait.js';

/**
 * Handle kinds a leaked HTTP/SMTP server, pg pool, embedded PostgreSQL or daemon keeps open. Timers
 * are left out: libraries arm and clear them on their own schedule, and what owns one also owns one of these.
 */
const WATCHED = new Set([
  'TCPServerWrap',
  'TCPSocketWrap',
  'TCPWrap',
  'PipeServerWrap',
  'ProcessWrap',
  'UDPWrap',
]);

function watchedHandles(): Map<string, number> {
  const counts = new Map<string, number>();
  for (const kind of process.getActiveResourcesInfo()) {
    if (WATCHED.has(kind)) counts.set(kind, (counts.get(kind) ?? 0) + 1);
  }
  return counts;
}

/** Handles opened during the file and still open, as "2 TCPSocketWrap". */
function extraHandles(baseline: Map<string, number>): string[] {
  const extra: string[] = [];
  for (const [kind, count] of watchedHandles()) {
    const more = count - (baseline.get(kind) ?? 0);
    if (more > 0) extra.push(`${more} ${kind}`);
  }
  return extra;
}

/** Live child processes of this worker, read from /proc (Linux); detached ones have no handle here. */
export function childProcesses(): string[] {
  if (!fs.existsSync('/proc/self/stat')) return [];
  const children: string[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // gone meanwhile
    }
    // pid (comm) state ppid ...: comm may hold spaces and parentheses, so read after the last ')'.
    const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(ppid) !== process.pid || state === 'Z') continue;
    let command = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    try {
      command = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').join(' ').trim() || command;
    } catch {
      // keep the short name
    }
    children.push(`pid ${entry}: ${command.slice(0, 160)}`);
  }
  return children;
}

const baseline = watchedHandles();
const baselineChildren = new Set(childProcesses());

afterAll(async () => {
  const problems: string[] = [];
  // Closing sockets and exiting children finish a moment after the awaited stop() that began them.
  const settled = await waitFor(
    'handles and child processes of the test file to close',
    () =>
      extraHandles(baseline).length === 0 && childProcesses().every((child) => baselineChildren.has(child)),
    3_000,
  ).catch(() => false);
  if (!settled) {
    const handles = extraHandles(baseline);
    if (handles.length > 0) problems.push(`open handles: ${handles.join(', ')}`);
    const children = childProcesses().filter((child) => !baselineChildren.has(child));
    if (children.length > 0) problems.push(`child processes still running:\n    ${children.join('\n    ')}`);
  }
  for (const leak of await databaseLeaksSoFar()) {
    problems.push(`connections left open to ${leak.database}:\n    ${leak.connections.join('\n    ')}`);
  }
  if (problems.length > 0) {
    throw new Error(
      `this test file left things running (stop every daemon, pool, server and process it starts):\n  ${problems.join('\n  ')}`,
    );
  }
});
