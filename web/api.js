// A client for the service's HTTP API: the {data, error} envelope, bearer tokens,
// transparent refresh, uploads with progress, and short-lived file links for the browser.

import { createPasskey, getPasskey } from "./webauthn.js";

export class ApiError extends Error {
  // `retryAfter`: seconds, from a 429's Retry-After
  constructor(status, code, message, details = null, retryAfter = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
    this.retryAfter = retryAfter;
  }
}

// Error codes after which the session is gone for good: signing in again is the only way on
// (account_disabled: an administrator revoked every session; the sign-in form shows why).
const SESSION_ENDED = new Set(["invalid_token", "invalid_refresh_token", "missing_token", "account_disabled"]);

// Seconds before its expiry at which accessToken() renews a token rather than send it.
const TOKEN_MARGIN = 5;

export class Api {
  #base = "";
  #access = null;
  #refresh = null;
  #refreshing = null;

  // Called once the server says the session is over (signed out elsewhere, refresh refused).
  onSessionEnded = (_error) => {};

  constructor(base) {
    this.base = base;
  }

  get base() {
    return this.#base;
  }

  set base(url) {
    this.#base = String(url).trim().replace(/\/+$/, "");
  }

  get signedIn() {
    return this.#access !== null;
  }

  // --- accounts -----------------------------------------------------------

  async signUp(id, password) {
    return this.#keep(await this.#request("POST", "/signup", { json: { id, password } }));
  }

  async signIn(id, password) {
    return this.#keep(await this.#request("POST", "/signin", { json: { id, password } }));
  }

  // --- a second factor and passkeys (SPEC §11) ---------------------------

  // `second`: {code} of the authenticator app, or {recovery_code}; `mfaToken` from the mfa_required error
  async signInMfa(mfaToken, second) {
    return this.#keep(await this.#request("POST", "/signin/mfa", { json: { mfa_token: mfaToken, ...second } }));
  }

  // Passwordless: `id` narrows the passkeys asked for; without it any passkey of this site may answer.
  async signInPasskey(id) {
    const options = await this.#request("POST", "/signin/passkey/options", { json: id ? { id } : {} });
    const credential = await getPasskey(options);
    const json = { challenge_id: options.challenge_id, credential };
    return this.#keep(await this.#request("POST", "/signin/passkey", { json }));
  }

  factors() {
    return this.#call("GET", "/mfa");
  }

  beginTotp() {
    return this.#call("POST", "/mfa/totp");
  }

  confirmTotp(code) {
    return this.#call("POST", "/mfa/totp/confirm", { code });
  }

  // `second`: {code} or {recovery_code}
  disableTotp(currentPassword, second) {
    return this.#call("DELETE", "/mfa/totp", { current_password: currentPassword, ...second });
  }

  passkeys() {
    return this.#call("GET", "/passkeys");
  }

  async addPasskey(name) {
    const options = await this.#call("POST", "/passkeys/register/options");
    const credential = await createPasskey(options);
    return this.#call("POST", "/passkeys/register", name ? { credential, name } : { credential });
  }

  renamePasskey(id, name) {
    return this.#call("PATCH", `/passkeys/${encodeURIComponent(id)}`, { name });
  }

  deletePasskey(id) {
    return this.#call("DELETE", `/passkeys/${encodeURIComponent(id)}`);
  }

  async logout() {
    try {
      return await this.#authorized((token) => this.#request("POST", "/logout", { token }));
    } finally {
      this.#forget();
    }
  }

  info() {
    return this.#call("GET", "/info");
  }

  // --- proving a login, getting back in, leaving (SPEC §10) ---------------

  forgotPassword(id) {
    return this.#request("POST", "/password/forgot", { json: { id } });
  }

  // `proof`: {token} from the message's link, or {id, code}
  async resetPassword(proof, password) {
    return this.#keep(await this.#request("POST", "/password/reset", { json: { ...proof, password } }));
  }

  requestVerification() {
    return this.#call("POST", "/verify/request");
  }

  confirmVerification(proof) {
    return this.#request("POST", "/verify/confirm", { json: proof });
  }

  // `second`: {code} or {recovery_code} when the account has a second factor
  async deleteAccount(currentPassword, second = {}) {
    const gone = await this.#call("DELETE", "/user", { current_password: currentPassword, ...second });
    this.#forget();
    return gone;
  }

  // The zip of everything of mine, as a Blob (a download needs the Authorization header).
  exportAccount() {
    return this.#authorized((token) => this.#request("GET", "/user/export", { token, blob: true }));
  }

  sessions() {
    return this.#call("GET", "/sessions");
  }

  endSession(sid) {
    return this.#call("DELETE", `/sessions/${encodeURIComponent(sid)}`);
  }

  // --- files --------------------------------------------------------------

  // `find`: {q, sort} (SPEC §14); empty values are left out
  listFiles(page, listSize, find = {}) {
    const query = new URLSearchParams({ page: String(page), list_size: String(listSize) });
    for (const [name, value] of Object.entries(find)) if (value) query.set(name, value);
    return this.#call("GET", `/file/list?${query}`);
  }

  file(id) {
    return this.#call("GET", `/file/${encodeURIComponent(id)}`);
  }

  deleteFile(id) {
    return this.#call("DELETE", `/file/delete/${encodeURIComponent(id)}`);
  }

  upload(file, onProgress) {
    return this.#authorized((token) => this.#send("POST", "/file/upload", token, file, onProgress));
  }

  replace(id, file, onProgress) {
    const path = `/file/update/${encodeURIComponent(id)}`;
    return this.#authorized((token) => this.#send("PUT", path, token, file, onProgress));
  }

  // A short-lived URL for the file that needs no Authorization header (SPEC §7): for <a href>,
  // <img src> and players. `disposition` is "attachment" (download) or "inline" (show).
  // `expiresIn`: seconds (1 to the server's LINK_MAX_TTL); left out, the server's default (300).
  link(id, disposition = "attachment", expiresIn = undefined) {
    const path = `/file/${encodeURIComponent(id)}/link`;
    const json = expiresIn === undefined ? { disposition } : { disposition, expires_in: expiresIn };
    return this.#authorized((token) => this.#request("POST", path, { token, json }));
  }

  usage() {
    return this.#call("GET", "/user/usage");
  }

  // An access token for requests sent by other code (the resumable uploads): renewed first when
  // it is about to expire, or when the server refused it (`refused` is that token).
  async accessToken(refused = null) {
    if (this.#access === null) throw signedOut();
    if (this.#access === refused || secondsLeft(this.#access) < TOKEN_MARGIN) {
      await this.#renew(this.#access);
    }
    return this.#access;
  }

  // --- tokens -------------------------------------------------------------

  #keep(tokens) {
    this.#access = tokens.access_token;
    this.#refresh = tokens.refresh_token;
    remember(this.#base, tokens.refresh_token);
    return tokens;
  }

  #forget() {
    this.#access = null;
    this.#refresh = null;
    remember(this.#base, null);
  }

  get resumable() {
    return remembered(this.#base) !== null;
  }

  // The session this tab had before a reload, if any: its refresh token (kept in sessionStorage)
  // gives a new pair on the same device session. Answers the token response, or null.
  async resume() {
    const refreshToken = remembered(this.#base);
    if (!refreshToken) return null;
    try {
      return this.#keep(await this.#request("POST", "/signin/new_token", { json: { refresh_token: refreshToken } }));
    } catch (error) {
      if (error instanceof ApiError && SESSION_ENDED.has(error.code)) {
        this.#forget(); // signed out meanwhile: start from the sign-in form
        return null;
      }
      throw error;
    }
  }

  #call(method, path, json = undefined) {
    return this.#authorized((token) => this.#request(method, path, { token, json }));
  }

  // Runs `send(accessToken)`; on token_expired refreshes once and retries once.
  async #authorized(send) {
    if (this.#access === null) {
      throw signedOut();
    }
    const used = this.#access;
    try {
      return await send(used);
    } catch (error) {
      if (error.code !== "token_expired") {
        throw this.#check(error);
      }
    }
    await this.#renew(used);
    try {
      return await send(this.#access);
    } catch (error) {
      throw this.#check(error);
    }
  }

  // One refresh for every request that failed with the same expired token: the server
  // rotates the refresh token, so a second refresh with the old one would be refused.
  #renew(expired) {
    if (this.#refreshing === null && this.#access === expired) {
      const refreshToken = this.#refresh;
      this.#refreshing = this.#request("POST", "/signin/new_token", { json: { refresh_token: refreshToken } })
        .then((tokens) => {
          this.#keep(tokens);
        })
        .catch((error) => {
          throw this.#check(error);
        })
        .finally(() => {
          this.#refreshing = null;
        });
    }
    if (this.#refreshing !== null) {
      return this.#refreshing;
    }
    // Another request already refreshed (or the user signed out) while this one was in flight.
    if (this.#access === null) {
      return Promise.reject(signedOut());
    }
    return Promise.resolve();
  }

  #check(error) {
    if (error instanceof ApiError && SESSION_ENDED.has(error.code) && this.#access !== null) {
      this.#forget();
      this.onSessionEnded(error);
    }
    return error;
  }

  // --- transport ----------------------------------------------------------

  // `blob`: a success answers with its body as a Blob (a file), not the envelope's data.
  async #request(method, path, { json, token, blob = false } = {}) {
    const headers = {};
    if (token) headers.Authorization = `Bearer ${token}`;
    if (json !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(this.#base + path, {
        method,
        headers,
        body: json === undefined ? undefined : JSON.stringify(json),
        cache: "no-store",
      });
    } catch {
      throw unreachable(this.#base);
    }
    if (blob && response.ok) return response.blob();
    let envelope = null;
    try {
      envelope = await response.json();
    } catch {
      // not JSON: reported below from the status alone
    }
    return unwrap(response.status, envelope, response.headers.get("Retry-After"));
  }

  // multipart upload through XMLHttpRequest, the one browser API that reports upload progress
  #send(method, path, token, file, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open(method, this.#base + path);
      xhr.setRequestHeader("Authorization", `Bearer ${token}`);
      xhr.responseType = "json";
      xhr.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable) onProgress(event.loaded, event.total);
      });
      xhr.addEventListener("load", () => {
        try {
          resolve(unwrap(xhr.status, xhr.response, xhr.getResponseHeader("Retry-After")));
        } catch (error) {
          reject(error);
        }
      });
      xhr.addEventListener("error", () => reject(unreachable(this.#base)));
      xhr.addEventListener("abort", () => reject(new ApiError(0, "aborted", "The upload was cancelled.")));
      onProgress(0, file.size);
      const form = new FormData();
      form.append("file", file, file.name);
      xhr.send(form);
    });
  }
}

// The refresh token of this tab, per API address, so a reload keeps the session (and its device) instead
// of signing in again. sessionStorage, not localStorage: it ends with the tab, and other tabs and a
// restarted browser sign in on their own. Script on this page could read it (so could it the memory);
// the page's CSP allows only its own scripts.
const SESSION_KEY = "files.session:";

function remember(base, refreshToken) {
  try {
    if (refreshToken) sessionStorage.setItem(SESSION_KEY + base, refreshToken);
    else sessionStorage.removeItem(SESSION_KEY + base);
  } catch {
    // storage refused (a private mode): the session lives in memory only
  }
}

function remembered(base) {
  try {
    return sessionStorage.getItem(SESSION_KEY + base);
  } catch {
    return null;
  }
}

function unwrap(status, envelope, retryAfter) {
  const ok = status >= 200 && status < 300;
  if (ok && envelope && envelope.error === null) return envelope.data;
  const error = envelope && envelope.error;
  if (error && error.message) {
    throw new ApiError(status, error.code, error.message, error.details || null, retryAfter);
  }
  throw new ApiError(status, "bad_response", `Unexpected answer from the API (HTTP ${status}).`);
}

function unreachable(base) {
  // fetch tells a refused connection and a refused CORS check apart only in the console
  return new ApiError(
    0,
    "network_error",
    `Could not reach the API at ${base}: it is not running, the address is wrong, or it refused this page's origin.`,
  );
}

function signedOut() {
  return new ApiError(401, "missing_token", "You are signed out. Sign in again.");
}

// Seconds until a JWT's `exp` by this browser's clock (Infinity when it cannot be read: the
// server's token_expired answer is then what triggers the refresh).
function secondsLeft(jwt) {
  try {
    const payload = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const { exp } = JSON.parse(atob(payload));
    return typeof exp === "number" ? exp - Date.now() / 1000 : Infinity;
  } catch {
    return Infinity;
  }
}
