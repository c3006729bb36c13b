/** Why the embedded PostgreSQL cannot be used; the message ends with what the user can set instead. */
export class EmbeddedServerError extends Error {
  override name = 'EmbeddedServerError';

  constructor(reason: string, options?: ErrorOptions) {
    super(
      `the embedded PostgreSQL cannot start: ${reason}. Set DATABASE_URL to use a PostgreSQL of your own, ` +
        'or RULEBOOK_DATA_DIR to keep the embedded one somewhere else',
      options,
    );
  }
}
