/**
 * A decoder for the messages of PostgreSQL's built-in `pgoutput` plugin, protocol version 1 (the
 * "Logical Replication Message Formats" chapter of the PostgreSQL documentation), as
 * `pg_logical_slot_get_binary_changes(slot, null, null, 'proto_version', '1', 'publication_names',
 * ...)` returns them: one message per row. It is what Debezium's PostgreSQL connector reads with
 * plugin.name=pgoutput, so a test can see the outbox as the connector would. Column values come as
 * PostgreSQL's text output (`null` for SQL NULL); relations are announced by a Relation message
 * before their first change in a session.
 */

export interface DecodedRelation {
  readonly schema: string;
  readonly table: string;
  readonly columns: readonly string[];
}

export type DecodedRow = Readonly<Record<string, string | null>>;

export type DecodedChange =
  | { readonly kind: 'begin'; readonly xid: number }
  | { readonly kind: 'commit' }
  | { readonly kind: 'relation'; readonly relation: DecodedRelation }
  | { readonly kind: 'insert'; readonly relation: DecodedRelation; readonly row: DecodedRow }
  | {
      readonly kind: 'update';
      readonly relation: DecodedRelation;
      readonly old: DecodedRow | null;
      readonly row: DecodedRow;
    }
  | { readonly kind: 'delete'; readonly relation: DecodedRelation; readonly old: DecodedRow }
  | { readonly kind: 'truncate'; readonly relations: readonly DecodedRelation[] }
  | { readonly kind: 'other'; readonly tag: string };

class Reader {
  readonly buffer: Buffer;
  #offset = 0;
  constructor(buffer: Buffer) {
    this.buffer = buffer;
  }

  byte(): string {
    return String.fromCharCode(this.buffer.readUInt8(this.#offset++));
  }
  int8(): number {
    return this.buffer.readInt8(this.#offset++);
  }
  int16(): number {
    const value = this.buffer.readInt16BE(this.#offset);
    this.#offset += 2;
    return value;
  }
  int32(): number {
    const value = this.buffer.readInt32BE(this.#offset);
    this.#offset += 4;
    return value;
  }
  uint32(): number {
    const value = this.buffer.readUInt32BE(this.#offset);
    this.#offset += 4;
    return value;
  }
  skip(bytes: number): void {
    this.#offset += bytes;
  }
  string(): string {
    const end = this.buffer.indexOf(0, this.#offset);
    if (end < 0) throw new Error(`pgoutput: unterminated string at byte ${this.#offset}`);
    const value = this.buffer.toString('utf8', this.#offset, end);
    this.#offset = end + 1;
    return value;
  }
  text(length: number): string {
    const value = this.buffer.toString('utf8', this.#offset, this.#offset + length);
    this.#offset += length;
    return value;
  }
}

/** Keeps the relations announced so far, as a connector's session does. */
export class PgOutputDecoder {
  readonly #relations = new Map<number, DecodedRelation>();

  decode(message: Buffer): DecodedChange {
    const reader = new Reader(message);
    const tag = reader.byte();
    switch (tag) {
      case 'B': {
        reader.skip(16); // final LSN, commit timestamp
        return { kind: 'begin', xid: reader.uint32() };
      }
      case 'C':
        return { kind: 'commit' };
      case 'R': {
        const id = reader.uint32();
        const schema = reader.string();
        const table = reader.string();
        reader.int8(); // replica identity setting
        const count = reader.int16();
        const columns: string[] = [];
        for (let i = 0; i < count; i++) {
          reader.int8(); // flags (part of the key)
          columns.push(reader.string());
          reader.skip(8); // type OID, type modifier
        }
        const relation = { schema, table, columns };
        this.#relations.set(id, relation);
        return { kind: 'relation', relation };
      }
      case 'I': {
        const relation = this.#relation(reader.uint32());
        expectTag(reader, 'N', tag);
        return { kind: 'insert', relation, row: readTuple(reader, relation) };
      }
      case 'U': {
        const relation = this.#relation(reader.uint32());
        let next = reader.byte();
        let old: DecodedRow | null = null;
        if (next === 'K' || next === 'O') {
          old = readTuple(reader, relation);
          next = reader.byte();
        }
        if (next !== 'N') throw new Error(`pgoutput: update without a new tuple (${next})`);
        return { kind: 'update', relation, old, row: readTuple(reader, relation) };
      }
      case 'D': {
        const relation = this.#relation(reader.uint32());
        const next = reader.byte();
        if (next !== 'K' && next !== 'O') throw new Error(`pgoutput: delete without an old tuple (${next})`);
        return { kind: 'delete', relation, old: readTuple(reader, relation) };
      }
      case 'T': {
        const count = reader.int32();
        reader.int8(); // options
        const relations: DecodedRelation[] = [];
        for (let i = 0; i < count; i++) relations.push(this.#relation(reader.uint32()));
        return { kind: 'truncate', relations };
      }
      default:
        return { kind: 'other', tag };
    }
  }

  #relation(id: number): DecodedRelation {
    const relation = this.#relations.get(id);
    if (!relation) throw new Error(`pgoutput: a change of relation ${id}, which was never announced`);
    return relation;
  }
}

function expectTag(reader: Reader, expected: string, message: string): void {
  const tag = reader.byte();
  if (tag !== expected) throw new Error(`pgoutput: expected ${expected} in a ${message} message, got ${tag}`);
}

function readTuple(reader: Reader, relation: DecodedRelation): DecodedRow {
  const count = reader.int16();
  if (count !== relation.columns.length) {
    throw new Error(
      `pgoutput: a tuple of ${count} columns for ${relation.schema}.${relation.table}, announced with ${relation.columns.length}`,
    );
  }
  const row: Record<string, string | null> = {};
  for (const column of relation.columns) {
    const kind = reader.byte();
    if (kind === 'n') row[column] = null;
    else if (kind === 't') row[column] = reader.text(reader.int32());
    else
      throw new Error(`pgoutput: column ${column} has value kind ${kind}, which this decoder does not read`);
  }
  return row;
}
