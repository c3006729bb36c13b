import { execFile } from 'node:child_process';
import path from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { packageRoot } from '../src/package-root.js';

const root = packageRoot();

describe('the leak check', () => {
  it('fails a test file that leaves a server, a child process and a database connection running', async () => {
    const { code, output } = await new Promise<{ code: number | null; output: string }>((resolve) => {
      const child = execFile(
        process.execPath,
        [
          path.join(root, 'node_modules/vitest/vitest.mjs'),
          'run',
          '--config',
          path.join(root, 'test/fixtures/leak-check.vitest.config.ts'),
        ],
        // The same server as this run: global-setup uses TEST_DATABASE_URL when set.
        { cwd: root, env: { ...process.env, TEST_DATABASE_URL: inject('pgAdminUrl'), CI: '1' } },
        () => {},
      );
      let text = '';
      child.stdout!.on('data', (chunk: Buffer) => (text += chunk.toString()));
      child.stderr!.on('data', (chunk: Buffer) => (text += chunk.toString()));
      child.once('close', (exitCode) => resolve({ code: exitCode, output: text }));
    });
    expect(code, output).toBe(1);
    expect(output).toContain('this test file left things running');
    expect(output).toMatch(/open handles: .*1 TCPServerWrap/);
    expect(output).toMatch(/child processes still running:\s+pid \d+: sleep 20/);
    expect(output).toMatch(
      /connections left open to test_\w+:\s+pid \d+, application 'leaky pool', state idle/,
    );
  });
});
