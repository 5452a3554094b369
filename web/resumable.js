// Resumable uploads (SPEC §8, tus 1.0.0) through tus-js-client, loaded by index.html as
// window.tus. Each upload's URL is kept in localStorage under a fingerprint of the file and the
// signed-in user, so choosing the same file again (after a pause, a lost connection or a page
// reload) continues from the offset the server holds.

import { ApiError } from "./api.js";

export const CHUNK_SIZE = 8 * 1024 * 1024;
export const RESUMABLE_FROM = CHUNK_SIZE; // files of this size and more go through tus

const PREFIX = "files";

const endpointOf = (api) => `${api.base}/file/uploads`;

// The key the upload's URL is kept under: another user of this browser never resumes it.
function fingerprintOf(owner, endpoint, file) {
  return [PREFIX, encodeURIComponent(owner), endpoint, file.name, file.type, file.size, file.lastModified].join(":");
}

// Uploads of `owner` left unfinished in this browser: [{name, size}], oldest first.
export async function unfinishedUploads(api, owner) {
  const key = `tus::${[PREFIX, encodeURIComponent(owner), endpointOf(api)].join(":")}:`;
  const all = await window.tus.defaultOptions.urlStorage.findAllUploads();
  return all
    .filter((upload) => upload.urlStorageKey.startsWith(key))
    .sort((a, b) => Date.parse(a.creationTime) - Date.parse(b.creationTime))
    .map((upload) => ({ name: upload.metadata?.filename || "file", size: upload.size }));
}

// One upload: `done` resolves to the new file's id, or rejects with an ApiError. A lost
// connection does not reject it: the upload waits (onInterrupted) until resume() or cancel().
export class ResumableUpload {
  #api;
  #upload;
  #refused = null;
  #settle;
  #running = false;
  #over = false;
  resuming = false;
  onProgress = (_sent, _total) => {};
  onChange = () => {}; // started, paused, interrupted, finished
  onInterrupted = (_error) => {};
  onReconnecting = (_attempt) => {}; // a request failed and is being tried again
  #attempts = 0;

  constructor(api, owner, file) {
    this.#api = api;
    this.file = file;
    this.done = new Promise((resolve, reject) => {
      this.#settle = { resolve, reject };
    });
    const endpoint = endpointOf(api);
    this.#upload = new window.tus.Upload(file, {
      endpoint,
      chunkSize: CHUNK_SIZE,
      metadata: { filename: file.name, filetype: file.type },
      fingerprint: (chosen) => Promise.resolve(fingerprintOf(owner, endpoint, chosen)),
      removeFingerprintOnSuccess: true,
      // A crashed or restarted server, or a lost network: keep trying for about two minutes, backing off.
      retryDelays: [0, 1000, 2000, 3000, 5000, 5000, 10000, 10000, 15000, 20000, 30000, 30000],
      // Every request gets a token that is good now: uploads outlive the 10-minute access token.
      onBeforeRequest: async (request) => {
        request.setHeader("Authorization", `Bearer ${await this.#api.accessToken(this.#refused)}`);
      },
      onShouldRetry: (error) => this.#shouldRetry(error),
      onProgress: (sent, total) => {
        this.#attempts = 0;
        this.onProgress(sent, total);
      },
      onSuccess: ({ lastResponse }) => {
        this.#over = true;
        this.#set(false);
        this.#settle.resolve(Number(lastResponse.getHeader("X-File-Id")));
      },
      onError: (error) => this.#failed(error),
    });
  }

  get running() {
    return this.#running;
  }

  #set(running) {
    this.#running = running;
    this.onChange();
  }

  // Starts, or continues an upload of the same file by this user found in this browser.
  async start() {
    const previous = await this.#upload.findPreviousUploads();
    if (previous.length > 0) {
      this.#upload.resumeFromPreviousUpload(previous[0]);
      this.resuming = true;
    }
    this.#run();
  }

  pause() {
    this.#set(false);
    return this.#upload.abort(false);
  }

  // Stops without forgetting it: choosing the same file later continues where it stopped.
  stop(message) {
    this.#over = true;
    this.pause();
    this.#settle.reject(new ApiError(0, "aborted", message));
  }

  resume() {
    if (!this.#running && !this.#over) this.#run();
  }

  // Stops for good: the server drops the partial bytes and this browser forgets the upload.
  async cancel() {
    this.#over = true;
    this.#set(false);
    try {
      await this.#upload.abort(true);
    } catch {
      // the partial upload expires on the server by itself (UPLOAD_EXPIRY)
    }
    this.#settle.reject(new ApiError(0, "aborted", `The upload of ${this.file.name} was cancelled.`));
  }

  #run() {
    this.#set(true);
    this.#upload.start();
  }

  #shouldRetry(error) {
    if (refusal(error)) return false; // e.g. signed out meanwhile
    const response = error.originalResponse;
    const status = response ? response.getStatus() : 0;
    if (status === 401 && envelopeOf(response)?.code === "token_expired") {
      // this browser's clock ran ahead of the server's: renew before the retry
      this.#refused = (error.originalRequest.getHeader("Authorization") || "").replace(/^Bearer /, "");
      return true;
    }
    // 409: another request still holds the upload (one cut off by a crash, until its claim lapses).
    if (status >= 400 && status < 500 && status !== 409 && status !== 423) return false;
    if (!navigator.onLine) return false;
    this.#attempts += 1;
    this.onReconnecting(this.#attempts);
    return true;
  }

  #failed(error) {
    const response = error.originalResponse;
    const lost = !refusal(error) && (!response || response.getStatus() === 0 || response.getStatus() >= 500);
    this.#over = !lost;
    this.#set(false);
    if (refusal(error)) {
      this.#settle.reject(error.causingError);
      return;
    }
    if (lost) {
      // the browser reports a lost network as "online" again: continue by then, or on Resume
      window.addEventListener("online", () => this.resume(), { once: true });
      this.onInterrupted(
        new ApiError(0, "network_error", `The upload of ${this.file.name} was interrupted. Press Resume to continue.`),
      );
      return;
    }
    const envelope = envelopeOf(response);
    const status = response.getStatus();
    this.#settle.reject(
      envelope?.message
        ? new ApiError(status, envelope.code, envelope.message, envelope.details || null,
          response.getHeader("Retry-After"))
        : new ApiError(status, "bad_response", `Unexpected answer from the API (HTTP ${status}).`),
    );
  }
}

// The API's refusal of a request the page made for the upload (a token refresh refused: the
// session is over), as opposed to a lost connection.
function refusal(error) {
  return error.causingError instanceof ApiError && error.causingError.code !== "network_error";
}

function envelopeOf(response) {
  try {
    return JSON.parse(response.getBody()).error || null;
  } catch {
    return null;
  }
}
