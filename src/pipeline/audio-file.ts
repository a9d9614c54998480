/** Checks on an audio file that callers make before they wait for a model to load. */
import { open, stat, type FileHandle } from 'node:fs/promises';
import { AudioDecodeError } from '../audio/decode.ts';

/**
 * Throws the decoder's own error (the message decoding would give) for a missing, unreadable
 * or non-file path, so a typo fails at once instead of after a model load.
 */
export async function checkReadableFile(path: string): Promise<void> {
  let handle: FileHandle | undefined;
  let isFile = true;
  try {
    isFile = (await stat(path)).isFile();
    if (isFile) handle = await open(path, 'r');
  } catch (err) {
    throw new AudioDecodeError('undecodable', path, `cannot read file (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  } finally {
    await handle?.close();
  }
  if (!isFile) throw new AudioDecodeError('undecodable', path, 'not a regular file');
}
