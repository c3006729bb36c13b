import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { packageRoot } from '../../src/package-root.js';

// The one way tests run rulebook as a process: spawnRulebook for a daemon or a command to watch,
// runRulebook for a command to run to its end.

export const CLI = path.join(packageRoot(), 'dist/src/cli.js');

/** Builds dist/ when the CLI there is missing or older than any file under src/. */
export function ensureCliBuilt(): void {
  const root = packageRoot();
  const newest = (dir: string): number =>
    Math.max(
      0,
      ...fs.readdirSync(dir, { withFileTypes: true }).map((entry) => {
        const file = path.join(dir, entry.name);
        return entry.isDirectory() ? newest(file) : fs.statSync(file).mtimeMs;
      }),
    );
  if (fs.existsSync(CLI) && fs.statSync(CLI).mtimeMs >= newest(path.join(root, 'src'))) return;
  try {
    execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'pipe' });
  } catch (error) {
    // tsc emits despite type errors elsewhere in the tree; only a missing CLI is fatal here.
    if (!fs.existsSync(CLI)) throw error;
  }
}

export interface DaemonProcess {
  readonly child: ChildProcess;
  /** Every JSON log line so far. */
  readonly logs: Record<string, unknown>[];
  /** stdout and stderr as they came. */
  readonly output: () => string;
  readonly stdout: () => string;
  readonly stderr: () => string;
  waitForLog(message: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  exited(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface RulebookOptions {
  /** Another build of the CLI (a copy of the checkout). */
  readonly cli?: string;
  readonly cwd?: string;
}

/**
 * Runs `rulebook <args>` as a real subprocess, collecting its JSON log lines. `env` is laid over this
 * process's environment; a variable set to undefined is removed from it.
 */
export function spawnRulebook(
  args: string[],
  env: Record<string, string | undefined>,
  options: RulebookOptions = {},
): DaemonProcess {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, LOG_LEVEL: 'info', ...env };
  for (const [name, value] of Object.entries(env)) if (value === undefined) delete childEnv[name];
  const child = spawn(process.execPath, [options.cli ?? CLI, ...args], {
    cwd: options.cwd,
    env: childEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Record<string, unknown>[] = [];
  let text = '';
  let stdout = '';
  let stderr = '';
  let buffered = '';
  const listeners: (() => void)[] = [];
  child.stdout!.on('data', (chunk: Buffer) => {
    text += chunk.toString();
    stdout += chunk.toString();
    buffered += chunk.toString();
    let newline: number;
    while ((newline = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      try {
        logs.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // not a log line
      }
    }
    for (const listener of listeners) listener();
  });
  child.stderr!.on('data', (chunk: Buffer) => {
    text += chunk.toString();
    stderr += chunk.toString();
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return {
    child,
    logs,
    output: () => text,
    stdout: () => stdout,
    stderr: () => stderr,
    exited: () => exit,
    waitForLog(message, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = logs.find((log) => log.msg === message);
          if (found) {
            clearTimeout(timer);
            resolve(found);
            return true;
          }
          return false;
        };
        const timer = setTimeout(
          () => reject(new Error(`no "${message}" log line within ${timeoutMs} ms; output:\n${text}`)),
          timeoutMs,
        );
        if (!check()) listeners.push(() => void check());
        void exit.then(() => {
          if (!check()) {
            clearTimeout(timer);
            reject(new Error(`rulebook exited before logging "${message}"; output:\n${text}`));
          }
        });
      });
    },
  };
}

export interface RulebookRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** stdout and stderr as they came. */
  readonly output: string;
}

/** Runs `rulebook <args>` to its end; kills it and fails if it outlives `timeoutMs`. */
export async function runRulebook(
  args: string[],
  env: Record<string, string | undefined>,
  options: RulebookOptions & { timeoutMs?: number } = {},
): Promise<RulebookRun> {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const run = spawnRulebook(args, env, options);
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      run.child.kill('SIGKILL');
      reject(new Error(`rulebook ${args.join(' ')} did not exit within ${timeoutMs} ms\n${run.output()}`));
    }, timeoutMs);
  });
  try {
    const { code } = await Promise.race([run.exited(), timedOut]);
    // 'exit' can come before the last output is read; a server the command left running may hold
    // the pipes open, so wait for their end only briefly.
    await Promise.race([
      Promise.all(
        [run.child.stdout, run.child.stderr].map((stream) => stream?.closed || once(stream!, 'close')),
      ),
      delay(1_000, undefined, { ref: false }),
    ]);
    return { code, stdout: run.stdout(), stderr: run.stderr(), output: run.output() };
  } finally {
    clearTimeout(timer);
  }
}
