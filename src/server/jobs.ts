/**
 * Runs one transcription for one HTTP request. The job is tied to the request's connection:
 * when the client goes away before the response is complete, the AbortSignal fires and the
 * transcriber stops decoding the upload, drops the job from its queue, or cancels it between
 * decoding steps, so the place is freed for the next client.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { TranscribeOptions, Transcriber, TranscriptionResult } from '../pipeline/types.ts';
import { requestLog } from './request-log.ts';
import type { UploadedFile } from './upload.ts';

export async function transcribeUpload(
  request: FastifyRequest,
  reply: FastifyReply,
  transcriber: Transcriber,
  file: UploadedFile,
  options: Omit<TranscribeOptions, 'signal'>,
): Promise<TranscriptionResult> {
  const controller = new AbortController();
  const res = reply.raw;
  // 'close' before the response finished = the connection is gone.
  const onClose = () => {
    if (!res.writableFinished) controller.abort();
  };
  if (res.destroyed) controller.abort();
  else res.once('close', onClose);

  const log = requestLog(request);
  const started = performance.now();
  try {
    const result = await transcriber.transcribeFile(file.path, { ...options, signal: controller.signal });
    log.audioSeconds = result.duration;
    log.language = result.language;
    return result;
  } catch (err) {
    throw hideTempPath(err, file);
  } finally {
    log.processingSeconds = (performance.now() - started) / 1000;
    res.off('close', onClose);
  }
}

/**
 * Decoder messages name the file they read, which here is our temp file: show the client's
 * own file name instead of a server path.
 */
function hideTempPath(err: unknown, file: UploadedFile): unknown {
  if (err instanceof Error && err.message.includes(file.path)) {
    err.message = err.message.split(file.path).join(file.filename ? `'${file.filename}'` : 'the upload');
  }
  return err;
}
