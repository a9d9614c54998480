/**
 * Multipart uploads: the audio file is streamed to a temp file (never held whole in memory)
 * with a size limit, the text fields are collected into `request.body`, and the route's JSON
 * schema then validates that body like any JSON body. The schema stays the single contract:
 *
 * - a property declared `type: 'boolean'` accepts pydantic's lax spellings (1/0, true/false,
 *   t/f, yes/no, y/n, on/off, any case), as the original FastAPI service did;
 * - a property declared `type: 'array'` accepts the SDKs' bracket key (`name[]`), the bare
 *   key, repeated values and comma-separated lists;
 * - `a[b]=v` becomes `{ a: { b: v } }` (how the SDKs encode objects such as chunking_strategy);
 * - empty text fields count as absent (FastAPI's form semantics);
 * - the file property is declared `{ uploadedFile: true }`: the Ajv keyword below accepts
 *   only a real file part, and the OpenAPI document shows it as `string/binary`.
 *
 * Temp files are tied to the response: they are removed when the response closes, whether it
 * finished, failed, or the client went away, including the race where the client leaves
 * while the file is still being opened.
 */
import { randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import multipart from '@fastify/multipart';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { HttpError } from './errors.ts';
import { requestLog } from './request-log.ts';

/** An uploaded file, as it appears in `request.body`. */
export class UploadedFile {
  constructor(
    /** The temp file holding the upload (removed when the response closes). */
    readonly path: string,
    /** The client's file name ('' when none was given). */
    readonly filename: string,
    readonly mimetype: string,
    readonly bytes: number,
  ) {}
}

export interface UploadOptions {
  /** Folder for temp files. */
  dir: string;
  /** Largest accepted file, in bytes. */
  maxBytes: number;
}

/** Biggest text field (a long prompt fits; a file sent as text does not). */
const MAX_FIELD_BYTES = 1024 * 1024;

/**
 * Ajv plugin: the `uploadedFile` keyword. Registered on the app's validator
 * (`ajv: { plugins: [uploadedFileKeyword] }`).
 */
export function uploadedFileKeyword(ajv: any): any {
  ajv.addKeyword({
    keyword: 'uploadedFile',
    schemaType: 'boolean',
    errors: true,
    validate: (wanted: boolean, data: unknown) => !wanted || data instanceof UploadedFile,
  });
  return ajv;
}

/** For the OpenAPI document: `{ uploadedFile: true }` is shown as a binary string. */
export function openApiFileSchemas<T>(schema: T): T {
  if (Array.isArray(schema)) return schema.map(openApiFileSchemas) as T;
  if (!schema || typeof schema !== 'object') return schema;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(schema)) {
    if (key === 'uploadedFile') continue;
    out[key] = openApiFileSchemas(value);
  }
  if ((schema as Record<string, unknown>).uploadedFile === true) {
    out.type = 'string';
    out.format = 'binary';
  }
  return out as T;
}

// ---------------------------------------------------------------------------------------
// Temp files

/** The temp files of one request; removed together when its response closes. */
class TempFiles {
  private readonly paths = new Set<string>();
  private closed = false;

  constructor(private readonly dir: string) {}

  get isClosed(): boolean {
    return this.closed;
  }

  newPath(filename: string): string {
    if (this.closed) throw new HttpError(499, 'The client closed the request.', { code: 'aborted' });
    // The extension is only a hint for the decoder (which probes the content), so keep it
    // when it looks like one and never let the client's name reach the file system.
    const ext = extname(filename);
    const path = join(this.dir, `qwen3-asr-upload-${randomUUID()}${/^\.[A-Za-z0-9]{1,10}$/.test(ext) ? ext.toLowerCase() : ''}`);
    this.paths.add(path);
    return path;
  }

  async removeAll(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.paths].map((p) => rm(p, { force: true }).catch(() => undefined)));
  }
}

const tempFilesOf = new WeakMap<FastifyRequest, TempFiles>();

function tempFilesFor(request: FastifyRequest, reply: FastifyReply, dir: string): TempFiles {
  let temps = tempFilesOf.get(request);
  if (!temps) {
    const created = new TempFiles(dir);
    temps = created;
    tempFilesOf.set(request, created);
    // 'close' fires once the response is done or its connection is gone: every path ends here.
    if (reply.raw.closed) void created.removeAll();
    else reply.raw.once('close', () => void created.removeAll());
  }
  return temps;
}

// ---------------------------------------------------------------------------------------
// Body building

const LAX_TRUE = new Set(['1', 'true', 't', 'yes', 'y', 'on']);
const LAX_FALSE = new Set(['0', 'false', 'f', 'no', 'n', 'off']);

export interface PropertySchema {
  type?: string | string[];
  anyOf?: PropertySchema[];
  oneOf?: PropertySchema[];
}

function declares(schema: PropertySchema | undefined, type: string): boolean {
  if (!schema) return false;
  if (schema.type === type || (Array.isArray(schema.type) && schema.type.includes(type))) return true;
  return [...(schema.anyOf ?? []), ...(schema.oneOf ?? [])].some((s) => declares(s, type));
}

/**
 * The text fields of one form, in arrival order. `name[]` (the SDKs' array encoding) and
 * `name` are the same field; `a[b]` is member b of object a.
 */
export class FormFields {
  private readonly fields = new Map<string, string[]>();
  private readonly nested = new Map<string, Map<string, string[]>>();

  add(name: string, value: string): void {
    const m = /^([^[\]]+)\[([^[\]]*)\]$/.exec(name);
    if (m && m[2] !== '') {
      const inner = this.nested.get(m[1]) ?? new Map<string, string[]>();
      this.nested.set(m[1], inner);
      inner.set(m[2], [...(inner.get(m[2]) ?? []), value]);
      return;
    }
    const key = m ? m[1] : name;
    this.fields.set(key, [...(this.fields.get(key) ?? []), value]);
  }

  /** The body the schema validates, values coerced by the declared property types. */
  toBody(properties: Record<string, PropertySchema>): Record<string, unknown> {
    const body: Record<string, unknown> = {};
    for (const [name, values] of this.fields) {
      const value = coerceValues(values, properties[name]);
      if (value !== undefined) body[name] = value;
    }
    for (const [name, inner] of this.nested) {
      if (body[name] !== undefined) continue; // a plain value wins over a half-encoded object
      const obj: Record<string, unknown> = {};
      for (const [key, values] of inner) {
        const present = values.filter((v) => v !== '');
        if (present.length) obj[key] = present.length === 1 ? present[0] : present;
      }
      body[name] = obj;
    }
    return body;
  }
}

function coerceValues(values: string[], schema: PropertySchema | undefined): unknown {
  if (declares(schema, 'array')) {
    return values.flatMap((v) => v.split(',')).map((v) => v.trim()).filter((v) => v !== '');
  }
  const present = values.filter((v) => v !== '');
  if (present.length === 0) return undefined;
  if (present.length > 1) return present; // fails the schema's scalar type, with a clear message
  const value = present[0];
  if (declares(schema, 'boolean')) {
    const lower = value.trim().toLowerCase();
    if (LAX_TRUE.has(lower)) return true;
    if (LAX_FALSE.has(lower)) return false;
  }
  return value;
}

// ---------------------------------------------------------------------------------------
// Fastify wiring

/**
 * Sets up one encapsulated context (an API's route plugin) for uploads: every body that is
 * not multipart is left unread (the route then reports the missing file in its own error
 * style instead of a generic 415), and multipart bodies are parsed by `readMultipartBody`.
 */
export async function setupUploads(app: FastifyInstance): Promise<void> {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, _payload, done) => done(null, undefined));
  await app.register(multipart, { throwFileSizeLimit: true });
}

/**
 * preValidation hook: streams the `file` part to a temp file and turns the text fields into
 * `request.body`. Non-multipart requests get an empty body, so validation reports the file
 * as missing.
 */
export function readMultipartBody(opts: UploadOptions & { fileField?: string }) {
  const fileField = opts.fileField ?? 'file';
  return async function readBody(request: FastifyRequest, reply: FastifyReply): Promise<void> {
    if (!request.isMultipart()) {
      request.body = {};
      return;
    }
    const temps = tempFilesFor(request, reply, opts.dir);
    const properties = ((request.routeOptions.schema?.body as { properties?: Record<string, PropertySchema> } | undefined)?.properties ?? {}) as Record<
      string,
      PropertySchema
    >;
    const fields = new FormFields();
    let upload: UploadedFile | undefined;
    const parts = request.parts({
      limits: { fileSize: opts.maxBytes, fieldSize: MAX_FIELD_BYTES, fields: 100, parts: 200, files: 10 },
    });
    // Bytes of the whole request, for the 413 message (the body is flowing into the parser now).
    let requestBytes = 0;
    const countBytes = (chunk: Buffer) => (requestBytes += chunk.length);
    request.raw.on('data', countBytes);
    try {
      for await (const part of parts) {
        if (part.type === 'field') {
          if (part.valueTruncated) {
            throw new HttpError(413, `Field '${part.fieldname}' is too long (limit ${MAX_FIELD_BYTES} bytes).`, { param: part.fieldname, code: 'field_too_large' });
          }
          fields.add(part.fieldname, String(part.value));
          continue;
        }
        if (part.fieldname !== fileField) {
          // A file under another name is not ours to keep: read it to nowhere.
          part.file.resume();
          continue;
        }
        if (upload) {
          part.file.resume();
          throw new HttpError(400, `Only one '${fileField}' may be uploaded per request.`, { param: fileField, code: 'invalid_value' });
        }
        upload = await saveToTemp(part, temps, opts.maxBytes, () => requestBytes);
        requestLog(request).bytes = upload.bytes;
      }
    } catch (err) {
      if (err instanceof HttpError) throw err;
      const e = err as { code?: string; statusCode?: number; message?: string };
      if (e.code === 'FST_REQ_FILE_TOO_LARGE') throw tooLarge(opts.maxBytes, requestBytes);
      if (e.code === 'FST_REQ_PREMATURE_CLOSE' || reply.raw.destroyed) throw new HttpError(499, 'The client closed the request.', { code: 'aborted' });
      if (typeof e.statusCode === 'number') throw err;
      // busboy's own errors ("Unexpected end of form", "Malformed part header", ...) carry no status.
      throw new HttpError(400, `Malformed multipart/form-data body: ${e.message ?? String(err)}`, { code: 'invalid_value' });
    } finally {
      request.raw.off('data', countBytes);
    }
    const body = fields.toBody(properties);
    if (upload) body[fileField] = upload;
    request.body = body;
  };
}

function tooLarge(maxBytes: number, read: number): HttpError {
  return new HttpError(413, `Maximum content size limit (${maxBytes}) exceeded (${Math.max(read, maxBytes + 1)} bytes read).`, {
    param: 'file',
    code: 'file_too_large',
  });
}

async function saveToTemp(
  part: { file: NodeJS.ReadableStream & { truncated?: boolean; bytesRead?: number }; filename: string; mimetype: string },
  temps: TempFiles,
  maxBytes: number,
  requestBytes: () => number,
): Promise<UploadedFile> {
  const path = temps.newPath(part.filename ?? '');
  const out = createWriteStream(path, { flags: 'wx', mode: 0o600 });
  try {
    await pipeline(part.file, out);
  } finally {
    // Wait for the descriptor to be released, then remove the file at once if the response
    // already closed (the close handler may have run before the file existed).
    if (!out.closed) await new Promise<void>((resolve) => out.once('close', () => resolve()));
    if (temps.isClosed) await rm(path, { force: true });
  }
  if (part.file.truncated) throw tooLarge(maxBytes, requestBytes());
  if (temps.isClosed) throw new HttpError(499, 'The client closed the request.', { code: 'aborted' });
  return new UploadedFile(path, part.filename ?? '', part.mimetype ?? 'application/octet-stream', part.file.bytesRead ?? 0);
}
