import { createHash } from 'node:crypto';

/** The RFC 9562 namespace for URLs (6ba7b811-9dad-11d1-80b4-00c04fd430c8). */
export const URL_NAMESPACE = '6ba7b811-9dad-11d1-80b4-00c04fd430c8';

/** A name-based UUID (version 5, SHA-1) as RFC 9562 section 5.5 defines it. */
export function uuidV5(namespace: string, name: string): string {
  const namespaceBytes = Buffer.from(namespace.replace(/-/g, ''), 'hex');
  if (namespaceBytes.length !== 16) throw new Error(`uuidV5: "${namespace}" is not a UUID`);
  const hash = createHash('sha1').update(namespaceBytes).update(name, 'utf8').digest();
  hash[6] = (hash[6]! & 0x0f) | 0x50;
  hash[8] = (hash[8]! & 0x3f) | 0x80;
  const hex = hash.subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * The recipient_id of a raw e-mail address: uuidV5(URL_NAMESPACE, "mailto:" + lower-cased address),
 * so the same address always gets the same id.
 */
export function emailRecipientId(address: string): string {
  return uuidV5(URL_NAMESPACE, `mailto:${address.trim().toLowerCase()}`);
}

/** The recipient_id of a webhook URL: uuidV5(URL_NAMESPACE, lower-cased URL). */
export function urlRecipientId(url: string): string {
  return uuidV5(URL_NAMESPACE, url.trim().toLowerCase());
}
