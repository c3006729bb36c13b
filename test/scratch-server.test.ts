import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { processAlive } from '../src/db/data-dir-lock.js';
import { runningServer } from '../src/db/embedded-server.js';
import { packageRoot } from '../src/package-root.js';
import { removeLeftoverServers, startScratchServer } from './support/scratch-server.js';

const PREFIX = `rulebook-scratch-check-${process.pid}`;

function records(): string[] {
  const dir = path.join(packageRoot(), '.rulebook', 'scratch-servers');
  return fs.existsSync(dir) ? fs.readdirSync(dir).filter((name) => name.startsWith(`${PREFIX}-`)) : [];
}

describe('scratch servers of test and bench runs', () => {
  it('are stopped and removed, cluster directory included, by the next run when their run was killed', async () => {
    const scratch = await startScratchServer(PREFIX, { settings: { fsync: 'off' } });
    const { clusterDir } = scratch.server;
    const pid = runningServer(clusterDir)!.pid;
    expect(records()).toHaveLength(1);
    // A run that was killed: its record names a process that is gone.
    const file = path.join(packageRoot(), '.rulebook', 'scratch-servers', records()[0]!);
    const dead = spawnSync('true').pid!;
    fs.writeFileSync(file, JSON.stringify({ ...JSON.parse(fs.readFileSync(file, 'utf8')), pid: dead }));

    expect(await removeLeftoverServers(PREFIX)).toEqual([clusterDir]);
    expect(processAlive(pid)).toBe(false);
    expect(fs.existsSync(clusterDir)).toBe(false);
    expect(records()).toEqual([]);
  });

  it('removes its own server and directories at its end, and leaves the servers of live runs alone', async () => {
    const scratch = await startScratchServer(PREFIX, { settings: { fsync: 'off' } });
    const { clusterDir } = scratch.server;
    expect(await removeLeftoverServers(PREFIX)).toEqual([]);
    expect(runningServer(clusterDir)).toBeDefined();
    await scratch.remove();
    expect(runningServer(clusterDir)).toBeUndefined();
    expect(fs.existsSync(clusterDir)).toBe(false);
    expect(records()).toEqual([]);
  });
});
