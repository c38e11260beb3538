/**
 * The browser side of `<baseUrl>tre/release/...`: the server extension forwards
 * these calls to the hub-side review service as this workspace. Only paths and
 * text travel from here; the service copies the files itself.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export interface IReleaseFile {
  name: string;
  verdict: string;
  summary: string;
}

export interface IReleaseRequest {
  id: string;
  title: string;
  state: string;
  files: IReleaseFile[];
  updated: string;
}

/** What the researcher says about one file; every field is required. The server
 * extension sends `population` and `suppression` to the service as its `controls`. */
export interface IFileFields {
  path: string;
  description: string;
  context: string;
  population: string;
  suppression: string;
}

export interface IRequestFields {
  title: string;
  description: string;
}

/** A refused or failed call, with the message the server extension or service gave. */
export class ReleaseError extends Error {}

async function call<T>(
  parts: string[],
  body?: object,
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const url = URLExt.join(settings.baseUrl, 'tre', 'release', ...parts);
  const init: RequestInit =
    body === undefined
      ? { method: 'GET' }
      : { method: 'POST', body: JSON.stringify(body) };
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (reason) {
    throw new ReleaseError(`The workspace server cannot be reached: ${String(reason)}`);
  }
  let data: unknown = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const message =
      data && typeof (data as { message?: unknown }).message === 'string'
        ? (data as { message: string }).message
        : `The request failed (HTTP ${response.status}).`;
    throw new ReleaseError(message);
  }
  return data as T;
}

function asText(value: unknown): string {
  return typeof value === 'string' ? value : value == null ? '' : String(value);
}

/** Coerce the service's reply into the shape the panel shows, whatever it holds. */
export function normaliseRequest(raw: unknown): IReleaseRequest {
  const r = (raw ?? {}) as Record<string, unknown>;
  const files = Array.isArray(r.files) ? r.files : [];
  return {
    id: asText(r.id),
    title: asText(r.title),
    state: asText(r.state),
    updated: asText(r.updated),
    files: files.map(f => {
      const file = (f ?? {}) as Record<string, unknown>;
      return {
        name: asText(file.name),
        verdict: asText(file.verdict),
        summary: asText(file.summary)
      };
    })
  };
}

/** The researcher's requests in this project; the service answers `{requests: [...]}`. */
export async function listRequests(): Promise<IReleaseRequest[]> {
  const data = await call<{ requests?: unknown }>(['requests']);
  const requests = data?.requests;
  if (!Array.isArray(requests)) {
    throw new ReleaseError('The review service sent an unexpected answer.');
  }
  return requests.map(normaliseRequest);
}

/**
 * Create a request, add every file, then submit it. A failure part-way leaves
 * a draft at the service; the error says which step failed.
 */
export async function submitRelease(
  request: IRequestFields,
  files: IFileFields[]
): Promise<IReleaseRequest> {
  const created = normaliseRequest(await call<unknown>(['requests'], request));
  if (!created.id) {
    throw new ReleaseError('The review service did not return a request id.');
  }
  for (const file of files) {
    try {
      await call<unknown>(['requests', created.id, 'files'], file);
    } catch (reason) {
      throw new ReleaseError(
        `Request ${created.id} was created as a draft, but ${file.path} could not be added: ${
          (reason as Error).message
        }`
      );
    }
  }
  return normaliseRequest(await call<unknown>(['requests', created.id, 'submit'], {}));
}
