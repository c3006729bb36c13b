import type pg from 'pg';
import { PgOutputDecoder, type WalMessage } from './pgoutput-decoder.js';

/**
 * The output plugin pg-logical-replication's LogicalReplicationService streams with: pgoutput,
 * protocol 1, one publication, values as text (see pgoutput-decoder.ts for why not the library's
 * own PgoutputPlugin), with logical decoding messages: they carry a transaction's chain depth and
 * actor (wal-context.ts).
 */
export class TextPgoutputPlugin {
  readonly options: { readonly publication: string };
  readonly #decoder = new PgOutputDecoder();

  constructor(publication: string) {
    this.options = { publication };
  }

  get name(): string {
    return 'pgoutput';
  }

  parse(buffer: Buffer): WalMessage {
    return this.#decoder.decode(buffer);
  }

  start(client: pg.Client, slotName: string, lastLsn: string): Promise<unknown> {
    // Identifiers in START_REPLICATION cannot be parameters; both are checked names (capture-slot.ts).
    const publication = this.options.publication.replace(/'/g, "''");
    return client.query(
      `START_REPLICATION SLOT "${slotName}" LOGICAL ${lastLsn} (proto_version '1', publication_names '${publication}', messages 'true')`,
    );
  }
}
