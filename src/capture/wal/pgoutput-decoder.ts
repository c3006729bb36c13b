/**
 * Decodes the messages of PostgreSQL's built-in `pgoutput` plugin, protocol version 1 ("Logical
 * Replication Message Formats" in the PostgreSQL documentation), keeping every column value as the
 * text PostgreSQL sent. pg-logical-replication's own parser converts values with node-postgres'
 * type parsers (dates become Date objects, numerics lose digits); rulebook needs the values exactly
 * as the capture trigger's to_jsonb would write them, so the text goes back to SQL, which casts it
 * to the column's type (workflow.wal_row_expression).
 */

/** Column name -> PostgreSQL's text output, null for SQL NULL. */
export type TextRow = Record<string, string | null>;

export interface WalRelation {
  readonly id: number;
  readonly schema: string;
  readonly table: string;
  /** 'd' default, 'n' nothing, 'f' full, 'i' index. */
  readonly replicaIdentity: string;
  readonly columns: readonly string[];
}

export type WalMessage =
  | { readonly tag: 'begin'; readonly commitLsn: string; readonly commitTime: Date; readonly xid: number }
  | { readonly tag: 'commit'; readonly commitLsn: string; readonly endLsn: string }
  | { readonly tag: 'relation'; readonly relation: WalRelation }
  | { readonly tag: 'insert'; readonly relation: WalRelation; readonly new: TextRow }
  | {
      readonly tag: 'update';
      readonly relation: WalRelation;
      readonly old: TextRow | null;
      readonly new: TextRow;
      /** Columns sent as "unchanged TOASTed value" for which no old value was at hand. */
      readonly missing: readonly string[];
    }
  | { readonly tag: 'delete'; readonly relation: WalRelation; readonly old: TextRow }
  /** pg_logical_emit_message(transactional, prefix, content). */
  | {
      readonly tag: 'message';
      readonly transactional: boolean;
      readonly prefix: string;
      readonly content: string;
    }
  | { readonly tag: 'other'; readonly type: string };

/** Microseconds from the Unix epoch to PostgreSQL's, 2000-01-01. */
const POSTGRES_EPOCH_MS = 946_684_800_000;

export class PgOutputDecoder {
  readonly #relations = new Map<number, WalRelation>();

  decode(buffer: Buffer): WalMessage {
    const reader = new BufferReader(buffer);
    const type = reader.char();
    switch (type) {
      case 'B': {
        const commitLsn = reader.lsn();
        const micros = reader.int64();
        return {
          tag: 'begin',
          commitLsn,
          commitTime: new Date(POSTGRES_EPOCH_MS + Number(micros / 1000n)),
          xid: reader.uint32(),
        };
      }
      case 'C': {
        reader.skip(1); // flags
        const commitLsn = reader.lsn();
        return { tag: 'commit', commitLsn, endLsn: reader.lsn() };
      }
      case 'R': {
        const id = reader.uint32();
        const schema = reader.string();
        const table = reader.string();
        const replicaIdentity = reader.char();
        const count = reader.int16();
        const columns: string[] = [];
        for (let i = 0; i < count; i++) {
          reader.skip(1); // flags: part of the key
          columns.push(reader.string());
          reader.skip(8); // type OID, type modifier
        }
        const relation = { id, schema, table, replicaIdentity, columns };
        this.#relations.set(id, relation);
        return { tag: 'relation', relation };
      }
      case 'I': {
        const relation = this.#relation(reader.uint32());
        reader.expect('N', type);
        return { tag: 'insert', relation, new: readTuple(reader, relation, null, []) };
      }
      case 'U': {
        const relation = this.#relation(reader.uint32());
        let next = reader.char();
        let oldRow: TextRow | null = null;
        if (next === 'K' || next === 'O') {
          oldRow = readTuple(reader, relation, null, []);
          next = reader.char();
        }
        if (next !== 'N')
          throw new Error(`pgoutput: an update of ${name(relation)} without a new row (${next})`);
        const missing: string[] = [];
        // Unchanged TOASTed values are not sent again: they are the old row's (REPLICA IDENTITY
        // FULL logs the old row with its TOASTed values inline).
        const newRow = readTuple(reader, relation, oldRow, missing);
        return { tag: 'update', relation, old: oldRow, new: newRow, missing };
      }
      case 'D': {
        const relation = this.#relation(reader.uint32());
        const next = reader.char();
        if (next !== 'K' && next !== 'O')
          throw new Error(`pgoutput: a delete of ${name(relation)} without an old row (${next})`);
        return { tag: 'delete', relation, old: readTuple(reader, relation, null, []) };
      }
      case 'M': {
        const transactional = (reader.int8() & 1) === 1;
        reader.skip(8); // the message's LSN
        const prefix = reader.string();
        return { tag: 'message', transactional, prefix, content: reader.text(reader.int32()) };
      }
      default:
        // Origin, Type and Truncate: nothing rulebook captures.
        return { tag: 'other', type };
    }
  }

  #relation(id: number): WalRelation {
    const relation = this.#relations.get(id);
    if (!relation) throw new Error(`pgoutput: a change of relation ${id}, which was never announced`);
    return relation;
  }
}

function name(relation: WalRelation): string {
  return `${relation.schema}.${relation.table}`;
}

/**
 * One row, in a single pass (the reader decodes every change of the published tables, relevant or
 * not). A column sent as an unchanged TOASTed value takes `fallback`'s value (the old row), or is
 * left out and listed in `missing`.
 */
function readTuple(
  reader: BufferReader,
  relation: WalRelation,
  fallback: TextRow | null,
  missing: string[],
): TextRow {
  const count = reader.int16();
  if (count !== relation.columns.length) {
    throw new Error(
      `pgoutput: a row of ${count} columns for ${name(relation)}, announced with ${relation.columns.length}`,
    );
  }
  const row: TextRow = {};
  for (const column of relation.columns) {
    const kind = reader.char();
    if (kind === 't') row[column] = reader.text(reader.int32());
    else if (kind === 'n') row[column] = null;
    else if (kind === 'u') {
      if (fallback && column in fallback) row[column] = fallback[column]!;
      else missing.push(column);
    } else
      throw new Error(
        `pgoutput: column ${column} of ${name(relation)} has value kind ${kind} (binary mode is not requested)`,
      );
  }
  return row;
}

class BufferReader {
  readonly #buffer: Buffer;
  #offset = 0;
  constructor(buffer: Buffer) {
    this.#buffer = buffer;
  }
  char(): string {
    return String.fromCharCode(this.#buffer.readUInt8(this.#offset++));
  }
  int8(): number {
    return this.#buffer.readUInt8(this.#offset++);
  }
  expect(expected: string, message: string): void {
    const tag = this.char();
    if (tag !== expected)
      throw new Error(`pgoutput: expected ${expected} in a ${message} message, got ${tag}`);
  }
  int16(): number {
    const value = this.#buffer.readInt16BE(this.#offset);
    this.#offset += 2;
    return value;
  }
  int32(): number {
    const value = this.#buffer.readInt32BE(this.#offset);
    this.#offset += 4;
    return value;
  }
  uint32(): number {
    const value = this.#buffer.readUInt32BE(this.#offset);
    this.#offset += 4;
    return value;
  }
  int64(): bigint {
    const value = this.#buffer.readBigInt64BE(this.#offset);
    this.#offset += 8;
    return value;
  }
  lsn(): string {
    const high = this.uint32();
    const low = this.uint32();
    return `${high.toString(16).toUpperCase()}/${low.toString(16).toUpperCase()}`;
  }
  skip(bytes: number): void {
    this.#offset += bytes;
  }
  string(): string {
    const end = this.#buffer.indexOf(0, this.#offset);
    if (end < 0) throw new Error(`pgoutput: unterminated string at byte ${this.#offset}`);
    const value = this.#buffer.toString('utf8', this.#offset, end);
    this.#offset = end + 1;
    return value;
  }
  text(length: number): string {
    const value = this.#buffer.toString('utf8', this.#offset, this.#offset + length);
    this.#offset += length;
    return value;
  }
}
