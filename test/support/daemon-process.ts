import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../../src/package-root.js';

export const CLI = path.join(packageRoot(), 'dist/src/cli.js');

export function cliBuilt(): boolean {
  return fs.existsSync(CLI);
}

export interface DaemonProcess {
  readonly child: ChildProcess;
  /** Every JSON log line so far. */
  readonly logs: Record<string, unknown>[];
  readonly output: () => string;
  waitForLog(message: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  exited(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Runs `rulebook <args>` as a real subprocess, collecting its JSON log lines. */
export function spawnRulebook(
  args: string[],
  env: Record<string, string>,
  options: { cli?: string; cwd?: string } = {},
): DaemonProcess {
  const child = spawn(process.execPath, [options.cli ?? CLI, ...args], {
    cwd: options.cwd,
    env: { ...process.env, LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Record<string, unknown>[] = [];
  let text = '';
  let buffered = '';
  const listeners: (() => void)[] = [];
  child.stdout!.on('data', (chunk: Buffer) => {
    text += chunk.toString();
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
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return {
    child,
    logs,
    output: () => text,
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
