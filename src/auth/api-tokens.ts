import { createHash, randomBytes } from 'node:crypto';

/** Every token starts with this, so that a leaked one is easy to recognise (and to scan for). */
export const TOKEN_PREFIX = 'rbk_';

const TOKEN_PATTERN = /^rbk_[A-Za-z0-9_-]{43}$/;

/** A new secret: `rbk_` and 32 random bytes in base64url (43 characters). */
export function generateToken(): string {
  return TOKEN_PREFIX + randomBytes(32).toString('base64url');
}

/** Whether `text` has the shape of a token; says nothing about whether it is valid. */
export function looksLikeToken(text: string): boolean {
  return TOKEN_PATTERN.test(text);
}

/** What the database keeps instead of the secret: the SHA-256 of the whole token, in hex. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}
