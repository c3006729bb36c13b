import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import pg from 'pg';
import { sqlState } from '../sql-state.js';
import { ServerClients, processAlive, withDataDirLock } from './data-dir-lock.js';
import { EmbeddedServerError } from './embedded-server-error.js';
import {
  DEFAULT_SYSTEM_DIR,
  canEnter,
  firstLine,
  makeEnterable,
  postgresBinaries,
  serverAccount,
  type ServerAccount,
} from './postgres-binaries.js';

export interface EmbeddedServerOptions {
  /** rulebook's data directory: the password, the server log and (where reachable) the cluster. */
  readonly dir: string;
  /** The port for a server this call starts; a server already running keeps its own. */
  readonly port: number;
  /** Where root's server account gets binaries and clusters it cannot reach otherwise (default /var/lib/rulebook). */
  readonly systemDir?: string;
  /** Extra `-c name=value` settings for a server this call starts. */
  readonly settings?: Readonly<Record<string, string>>;
  /** What happens to the server that a person may want to know: where the cluster is, a copy made. */
  readonly onLog?: (message: string) => void;
}

export interface EmbeddedServer {
  /** A URL for the `postgres` database; other databases on the server differ only in the path. */
  readonly url: string;
  /** Where the cluster's files are: `<dir>/pgdata`, or under /var/lib/rulebook when root's server account cannot reach `<dir>`. */
  readonly clusterDir: string;
  /** The server's own output. */
  readonly logFile: string;
  /** False when another rulebook process's server was running and this one attached to it. */
  readonly started: boolean;
  /** Lets go of the server; the last rulebook process to let go stops it. */
  stop(): Promise<void>;
}

const USER = 'rulebook';
/** Clusters made before passwords were generated used this one; on first start it is replaced. */
const LEGACY_PASSWORD = 'rulebook';
const INVALID_PASSWORD = '28P01';
const CONNECT_TIMEOUT_MS = 2_000;
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 30_000;

interface Layout {
  readonly dataDir: string;
  readonly clusterDir: string;
  readonly passwordFile: string;
  readonly logFile: string;
  /** Set when the cluster is not under dataDir: this file in dataDir says where it is. */
  readonly pointerFile: string | undefined;
  /**
   * Beside a cluster that is not under dataDir, root's copy of the password: deleting dataDir (git
   * clean -fdx) must not leave a cluster that nobody can log in to.
   */
  readonly passwordCopy: string | undefined;
}

/**
 * Uses the embedded PostgreSQL of a data directory: attaches to the server when a rulebook process
 * runs one, and otherwise starts one (creating the cluster on first use). Every failure is an
 * EmbeddedServerError that says why and what to set instead.
 */
export async function startEmbeddedServer(options: EmbeddedServerOptions): Promise<EmbeddedServer> {
  const account = serverAccount();
  const dataDir = prepareDataDir(options.dir, account);
  const log = options.onLog ?? (() => {});
  const clients = new ServerClients(dataDir);
  const systemDir = options.systemDir ?? DEFAULT_SYSTEM_DIR;
  return withDataDirLock(dataDir, async () => {
    const layout = clusterLayout(dataDir, account, systemDir);
    if (layout.pointerFile) {
      log(
        `the cluster is in ${layout.clusterDir}, since the "${account?.name}" account PostgreSQL runs as cannot enter ${dataDir} (${layout.pointerFile} says so too)`,
      );
    }
    // Undefined for a cluster whose password is lost, or one from before passwords were generated.
    let password = readPassword(layout);
    let server: { pid: number; port: number };
    const running = runningServer(layout.clusterDir);
    if (running) {
      server = running;
    } else {
      const binaries = postgresBinaries(account, systemDir);
      if (binaries.startsWith(systemDir)) {
        log(`the PostgreSQL binaries run from ${binaries}, a copy the "${account?.name}" account can reach`);
      }
      if (!fs.existsSync(path.join(layout.clusterDir, 'PG_VERSION'))) {
        password ??= crypto.randomBytes(24).toString('base64url');
        await createCluster(binaries, layout, account, password, systemDir);
      }
      removeStalePidFile(layout.clusterDir, log);
      const pid = await spawnServer(binaries, layout, account, options.port, options.settings ?? {});
      server = { pid, port: options.port };
    }
    const { port } = server;
    try {
      await waitUntilAnswering(port, server.pid, layout, password ?? LEGACY_PASSWORD);
      password = await settlePassword(port, password, layout);
      savePassword(layout, password);
    } catch (error) {
      // A server started here that nobody can use would otherwise hold the port and the data directory.
      if (!running) await stopProcess(server.pid).catch(() => {});
      throw error;
    }
    const registration = clients.register();
    return {
      url: `postgres://${USER}:${encodeURIComponent(password)}@127.0.0.1:${port}/postgres`,
      clusterDir: layout.clusterDir,
      logFile: layout.logFile,
      started: !running,
      stop: () =>
        withDataDirLock(dataDir, async () => {
          clients.unregister(registration);
          if (clients.live() === 0) await stopServer(layout.clusterDir);
        }),
    };
  });
}

/** The running server of a cluster, from the postmaster.pid that PostgreSQL keeps while it runs. */
export function runningServer(clusterDir: string): { pid: number; port: number } | undefined {
  let lines: string[];
  try {
    lines = fs.readFileSync(path.join(clusterDir, 'postmaster.pid'), 'utf8').split('\n');
  } catch {
    return undefined;
  }
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!Number.isInteger(pid) || pid <= 0 || !Number.isInteger(port)) return undefined;
  return isPostmasterOf(pid, lines[1] ?? '', clusterDir) ? { pid, port } : undefined;
}

/**
 * Whether `pid` is a postgres serving `clusterDir`. After an unclean stop postmaster.pid stays, and
 * its pid may since belong to another process: that one must be neither waited for nor signalled.
 */
function isPostmasterOf(pid: number, pidFileDataDir: string, clusterDir: string): boolean {
  if (!processAlive(pid) || !sameDir(pidFileDataDir, clusterDir)) return false;
  let argv: string[];
  try {
    argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
  } catch {
    // Without /proc (macOS) the pid is all there is to go by; with it, the process just ended.
    return !fs.existsSync('/proc/self') && processAlive(pid);
  }
  const dataDirArg = argv.indexOf('-D');
  return (
    path.basename(argv[0] ?? '') === 'postgres' &&
    dataDirArg > 0 &&
    sameDir(argv[dataDirArg + 1] ?? '', clusterDir)
  );
}

function sameDir(a: string, b: string): boolean {
  if (a === '') return false;
  try {
    return fs.realpathSync(a) === fs.realpathSync(b);
  } catch {
    return path.resolve(a) === path.resolve(b);
  }
}

/**
 * PostgreSQL itself refuses to start while the pid in postmaster.pid runs as its own account, even
 * when that is no postgres. Safe to remove once runningServer said no: the shared memory block
 * still stops a start beside backends of a postmaster that died.
 */
function removeStalePidFile(clusterDir: string, log: (message: string) => void): void {
  const file = path.join(clusterDir, 'postmaster.pid');
  let pid: string | undefined;
  try {
    pid = fs.readFileSync(file, 'utf8').split('\n')[0];
  } catch {
    return;
  }
  fs.rmSync(file, { force: true });
  log(`removed ${file} left by an unclean stop (pid ${pid} is no postgres of this cluster)`);
}

function prepareDataDir(dir: string, account: ServerAccount | undefined): string {
  const existed = fs.existsSync(dir);
  try {
    fs.mkdirSync(dir, { recursive: true });
    const dataDir = fs.realpathSync(dir);
    // Root's data directory must be enterable (not listable) by the server's account when the
    // cluster is to live in it; 0777 is what earlier versions left behind.
    if (account && (!existed || (fs.statSync(dataDir).mode & 0o777) === 0o777)) fs.chmodSync(dataDir, 0o711);
    if (!account && !existed) fs.chmodSync(dataDir, 0o700);
    return dataDir;
  } catch (error) {
    throw new EmbeddedServerError(`its data directory ${dir} cannot be created (${firstLine(error)})`);
  }
}

function clusterLayout(dataDir: string, account: ServerAccount | undefined, systemDir: string): Layout {
  const files = {
    dataDir,
    passwordFile: path.join(dataDir, 'password'),
    logFile: path.join(dataDir, 'postgres.log'),
  };
  const inPlace = path.join(dataDir, 'pgdata');
  const pointerFile = path.join(dataDir, 'cluster-location');
  const clusters = path.join(path.resolve(systemDir), 'clusters');
  const relocated = (clusterDir: string) => ({
    ...files,
    clusterDir,
    pointerFile,
    passwordCopy: path.join(path.dirname(clusterDir), 'password'),
  });
  if (fs.existsSync(pointerFile)) {
    const named = fs.readFileSync(pointerFile, 'utf8').trim();
    const clusterDir = path.resolve(named);
    // Only a directory this code made: a cluster without PG_VERSION is deleted and made anew.
    if (path.dirname(path.dirname(clusterDir)) !== clusters || path.basename(clusterDir) !== 'pgdata') {
      throw new EmbeddedServerError(
        `${pointerFile} names "${named}" as the cluster, which is not ${path.join(clusters, '<name>', 'pgdata')}; set RULEBOOK_SYSTEM_DIR to the directory the cluster was made under, or delete that file to make a new cluster`,
      );
    }
    return relocated(clusterDir);
  }
  if (!account || canEnter(account, dataDir))
    return { ...files, clusterDir: inPlace, pointerFile: undefined, passwordCopy: undefined };
  if (fs.existsSync(path.join(inPlace, 'PG_VERSION'))) {
    throw new EmbeddedServerError(
      `its cluster ${inPlace} is in a directory the "${account.name}" account cannot enter; let it (chmod o+x on ${dataDir} and the directories above) or move the data directory`,
    );
  }
  // Named after the checkout (`rb` for rb/.rulebook) so that a person listing the directory can tell
  // whose it is; the hash keeps two checkouts of the same name apart.
  const name =
    path.basename(dataDir) === '.rulebook' ? path.basename(path.dirname(dataDir)) : path.basename(dataDir);
  const hash = crypto.createHash('sha256').update(dataDir).digest('hex').slice(0, 12);
  const id = `${name.replace(/^\.+/, '').replace(/[^\w.-]/g, '_') || 'rulebook'}-${hash}`;
  const clusterDir = path.join(clusters, id, 'pgdata');
  fs.writeFileSync(pointerFile, `${clusterDir}\n`);
  return relocated(clusterDir);
}

/** The data directory's password file, else root's copy beside the cluster. */
function readPassword(layout: Layout): string | undefined {
  for (const file of [layout.passwordFile, layout.passwordCopy]) {
    if (file === undefined) continue;
    try {
      const password = fs.readFileSync(file, 'utf8').trim();
      if (password !== '') return password;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new EmbeddedServerError(`its password file ${file} cannot be read (${firstLine(error)})`);
      }
    }
  }
  return undefined;
}

/** Into the password file and root's copy, each 0600, where they lack it. */
function savePassword(layout: Layout, password: string): void {
  for (const file of [layout.passwordFile, layout.passwordCopy]) {
    if (file === undefined) continue;
    try {
      if (fs.readFileSync(file, 'utf8').trim() === password) continue;
    } catch {
      // missing: written below
    }
    // Renamed into place: a crash must not leave half a password in place of the whole one.
    const temporary = `${file}.new-${crypto.randomBytes(4).toString('hex')}`;
    fs.writeFileSync(temporary, `${password}\n`, { mode: 0o600 });
    fs.renameSync(temporary, file);
  }
}

/** initdb runs as the server's account too; it cannot read root's temporary directory, hence the password file beside the cluster. */
async function createCluster(
  binaries: string,
  layout: Layout,
  account: ServerAccount | undefined,
  password: string,
  systemDir: string,
): Promise<void> {
  const parent = path.dirname(layout.clusterDir);
  if (layout.pointerFile && account) makeEnterable(account, systemDir, parent);
  removeFailedInitdb(layout.clusterDir, account);
  // Before initdb: a crash after it must not leave a cluster whose password nobody has.
  savePassword(layout, password);
  fs.mkdirSync(layout.clusterDir, { mode: 0o700 });
  const passwordFile = path.join(parent, `.initdb-password-${crypto.randomBytes(4).toString('hex')}`);
  fs.writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 });
  if (account) {
    fs.chownSync(layout.clusterDir, account.uid, account.gid);
    fs.chownSync(passwordFile, account.uid, account.gid);
  }
  try {
    const initdb = path.join(binaries, 'bin', 'initdb');
    const output = await run(initdb, account, [
      `--pgdata=${layout.clusterDir}`,
      `--username=${USER}`,
      '--auth=scram-sha-256',
      `--pwfile=${passwordFile}`,
      '--encoding=UTF8',
      `--locale=${utf8Locale()}`,
      '--lc-messages=C',
    ]);
    if (output.error !== undefined) {
      throw new EmbeddedServerError(`${initdb} cannot be run (${output.error})`);
    }
    if (output.code !== 0) {
      const reason = output.text.trim().split('\n').slice(-3).join(' ');
      throw new EmbeddedServerError(`initdb failed for ${layout.clusterDir}: ${reason}`);
    }
  } finally {
    fs.rmSync(passwordFile, { force: true });
  }
}

/** A cluster directory without PG_VERSION is what a failed initdb leaves: empty, or the server account's. Anything else is not ours to delete. */
function removeFailedInitdb(clusterDir: string, account: ServerAccount | undefined): void {
  let stat: fs.Stats;
  try {
    stat = fs.lstatSync(clusterDir);
  } catch {
    return;
  }
  const serverUid = account?.uid ?? process.getuid?.();
  const empty = stat.isDirectory() && fs.readdirSync(clusterDir).length === 0;
  if (!empty && !(stat.isDirectory() && stat.uid === serverUid)) {
    throw new EmbeddedServerError(
      `${clusterDir} is no cluster (no PG_VERSION) and not what a failed initdb leaves (a directory of the "${account?.name ?? os.userInfo().username}" account); move it away or delete it`,
    );
  }
  fs.rmSync(clusterDir, { recursive: true, force: true });
}

/** C.UTF-8 sorts like C but knows upper and lower case beyond ASCII; glibc has shipped it since 2.35. */
function utf8Locale(): string {
  try {
    const available = fs.readdirSync('/usr/lib/locale');
    if (available.some((name) => /^C\.utf-?8$/i.test(name))) return 'C.UTF-8';
  } catch {
    // no locale directory: plain C below
  }
  return 'C';
}

function run(
  command: string,
  account: ServerAccount | undefined,
  args: readonly string[],
): Promise<{ code: number | null; text: string; error?: string }> {
  return new Promise((resolve) => {
    const child = spawn(command, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      // The server's account may not enter this process's directory (a clone under /root), which
      // PostgreSQL's programs complain about; their own directory it can enter.
      cwd: path.dirname(command),
      ...(account ? { uid: account.uid, gid: account.gid } : {}),
    });
    let text = '';
    child.stdout.on('data', (chunk: Buffer) => (text += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (text += chunk.toString()));
    child.once('error', (error) => resolve({ code: null, text, error: error.message }));
    child.once('close', (code) => resolve({ code, text }));
  });
}

/** Starts the server in its own process group, its output in the log file, so that it can outlive this process for other clients. */
async function spawnServer(
  binaries: string,
  layout: Layout,
  account: ServerAccount | undefined,
  port: number,
  settings: Readonly<Record<string, string>>,
): Promise<number> {
  const flags = Object.entries({ listen_addresses: '127.0.0.1', unix_socket_directories: '', ...settings });
  const logStart = fs.existsSync(layout.logFile) ? fs.statSync(layout.logFile).size : 0;
  const logFd = fs.openSync(layout.logFile, 'a', 0o600);
  const postgres = path.join(binaries, 'bin', 'postgres');
  const child = spawn(
    postgres,
    [
      '-D',
      layout.clusterDir,
      '-p',
      String(port),
      ...flags.flatMap(([name, value]) => ['-c', `${name}=${value}`]),
    ],
    {
      detached: true,
      stdio: ['ignore', logFd, logFd],
      cwd: path.dirname(postgres),
      ...(account ? { uid: account.uid, gid: account.gid } : {}),
    },
  );
  fs.closeSync(logFd);
  const failed = await new Promise<string | undefined>((resolve) => {
    child.once('error', (error) => resolve(`${postgres} cannot be run (${error.message})`));
    child.once('spawn', () => resolve(undefined));
  });
  if (failed) throw new EmbeddedServerError(failed);
  // Not holding this process open: a daemon's server stops when the daemon stops it, a command's
  // when it closes; only awaiting its exit refs it again.
  child.unref();
  const pid = child.pid!;
  const exited = new Promise<void>((resolve) =>
    child.once('exit', (code, signal) => {
      if (code !== 0) lastFailure.set(pid, explainExit(layout.logFile, logStart, port, code, signal));
      exits.delete(pid);
      resolve();
    }),
  );
  exits.set(pid, () => {
    child.ref();
    return exited;
  });
  return pid;
}

/** The servers this process started: awaiting one's exit, and why one did not start. */
const exits = new Map<number, () => Promise<void>>();
const lastFailure = new Map<number, string>();

function explainExit(
  logFile: string,
  from: number,
  port: number,
  code: number | null,
  signal: string | null,
): string {
  let lines: string[] = [];
  try {
    lines = fs.readFileSync(logFile, 'utf8').slice(from).trim().split('\n');
  } catch {
    // no log to quote
  }
  // "could not bind" names the port's problem; the FATAL line after it only says that none was left.
  const quoted = [
    lines.find((line) => /could not bind/.test(line)),
    lines.find((line) => /FATAL|PANIC/.test(line)),
  ]
    .filter((line) => line !== undefined)
    .map((line) => line.replace(/^.*?\[\d+\]\s*/, '').trim());
  const hint = lines.some((line) => /could not bind/.test(line))
    ? `; set RULEBOOK_EMBEDDED_PG_PORT to a free port above 1024`
    : '';
  return `postgres exited (${code ?? signal}): ${quoted.join('; ') || lines.at(-1)?.trim()}${hint} (log: ${logFile})`;
}

/**
 * Until a connection is accepted. With the password the cluster should have, so that a start logs no
 * authentication failure; one (a cluster on an older password) also means that the server is up.
 */
async function waitUntilAnswering(
  port: number,
  pid: number,
  layout: Layout,
  password: string,
): Promise<void> {
  const deadline = Date.now() + START_TIMEOUT_MS;
  let last = '';
  while (Date.now() < deadline) {
    if (!processAlive(pid)) {
      // Our own child's exit handler may run a moment after the process is gone.
      await exits.get(pid)?.();
      throw new EmbeddedServerError(
        lastFailure.get(pid) ?? `postgres (pid ${pid}) stopped; see ${layout.logFile}`,
      );
    }
    // A connection while it starts up is refused with a FATAL line in the log; PostgreSQL says in
    // postmaster.pid when it is ready.
    if (!postmasterReady(layout.clusterDir)) {
      last = 'starting up';
      await delay(50);
      continue;
    }
    const client = serverClient(port, password);
    try {
      await client.connect();
      await client.end();
      return;
    } catch (error) {
      const code = sqlState(error);
      if (code === INVALID_PASSWORD) return;
      // Refused or "starting up" while it starts; a timeout when something else holds the port,
      // and then the server exits, which the next round notices.
      last = firstLine(error) || String(code);
    }
    // Start-up takes about a second; the server announces readiness only in its log.
    await delay(100);
  }
  throw new EmbeddedServerError(
    `postgres (pid ${pid}, cluster ${layout.clusterDir}) does not answer on 127.0.0.1:${port} (${last}); see ${layout.logFile}`,
  );
}

/**
 * Line 8 of postmaster.pid: "starting", "ready", "stopping". The server writes the file a few
 * lines at a time while it starts, so a file without that line yet is a server still starting (the
 * embedded binaries are PostgreSQL 15, which always writes it).
 */
function postmasterReady(clusterDir: string): boolean {
  let status: string | undefined;
  try {
    status = fs.readFileSync(path.join(clusterDir, 'postmaster.pid'), 'utf8').split('\n')[7];
  } catch {
    return false;
  }
  return status?.trim() === 'ready';
}

function serverClient(port: number, password: string): pg.Client {
  return new pg.Client({
    host: '127.0.0.1',
    port,
    user: USER,
    password,
    database: 'postgres',
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
  });
}

/**
 * The password that logs in: the one known, else (a cluster from before passwords were generated) a
 * new one that replaces the old fixed one.
 */
async function settlePassword(port: number, known: string | undefined, layout: Layout): Promise<string> {
  const connect = async (secret: string) => {
    const client = serverClient(port, secret);
    await client.connect();
    return client;
  };
  if (known !== undefined) {
    try {
      await (await connect(known)).end();
      return known;
    } catch (error) {
      if (sqlState(error) !== INVALID_PASSWORD) throw error;
    }
  }
  let client: pg.Client;
  try {
    client = await connect(LEGACY_PASSWORD);
  } catch (error) {
    if (sqlState(error) !== INVALID_PASSWORD) throw error;
    if (known !== undefined) {
      throw new EmbeddedServerError(
        `the password in ${layout.passwordFile} is not the one of the cluster in ${layout.clusterDir}; put the right one in that file`,
      );
    }
    const lost = [layout.passwordFile, layout.passwordCopy].filter((file) => file !== undefined);
    throw new EmbeddedServerError(
      `the cluster in ${layout.clusterDir} exists but its password is lost (no ${lost.join(' nor ')}); put its password in ${layout.passwordFile}, or delete ${layout.clusterDir} to start over with an empty database`,
    );
  }
  const password = known ?? crypto.randomBytes(24).toString('base64url');
  try {
    await client.query(`alter role ${USER} password ${client.escapeLiteral(password)}`);
  } finally {
    await client.end();
  }
  return password;
}

async function stopServer(clusterDir: string): Promise<void> {
  const running = runningServer(clusterDir);
  if (running) await stopProcess(running.pid);
}

async function stopProcess(pid: number): Promise<void> {
  // SIGINT is PostgreSQL's fast shutdown: sessions are ended, nothing committed is lost.
  try {
    process.kill(pid, 'SIGINT');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ESRCH') return;
    throw error;
  }
  const own = exits.get(pid);
  const deadline = Date.now() + STOP_TIMEOUT_MS;
  if (own) {
    await Promise.race([own(), delay(STOP_TIMEOUT_MS, undefined, { ref: false })]);
  } else {
    while (processAlive(pid) && Date.now() < deadline) await delay(50);
  }
  if (processAlive(pid)) {
    throw new Error(`the embedded PostgreSQL (pid ${pid}) did not stop within ${STOP_TIMEOUT_MS / 1000} s`);
  }
}
