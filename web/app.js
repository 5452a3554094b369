import { Api, ApiError } from "./api.js";
import { RESUMABLE_FROM, ResumableUpload, unfinishedUploads } from "./resumable.js";
import { setupSecurity } from "./security.js";

const DEFAULT_API = "http://localhost:3000";
const API_KEY = "files.api";

const $ = (id) => document.getElementById(id);
const ui = {
  error: $("error"),
  status: $("status"),
  account: $("account"),
  whoami: $("whoami"),
  authView: $("auth-view"),
  appView: $("app-view"),
  authForm: $("auth-form"),
  loginId: $("login-id"),
  password: $("password"),
  apiForm: $("api-form"),
  apiBase: $("api-base"),
  uploadForm: $("upload-form"),
  uploadFile: $("upload-file"),
  uploadButton: $("upload"),
  pause: $("pause"),
  resume: $("resume"),
  cancel: $("cancel"),
  unfinished: $("unfinished"),
  usage: $("usage"),
  usageBar: $("usage-bar"),
  usageText: $("usage-text"),
  share: $("share"),
  shareName: $("share-name"),
  shareUrl: $("share-url"),
  shareExpiry: $("share-expiry"),
  progress: $("upload-progress"),
  percent: $("upload-percent"),
  uploadLabel: $("upload-label"),
  files: document.querySelector("#files tbody"),
  pageInfo: $("page-info"),
  prev: $("prev-page"),
  next: $("next-page"),
  pageSize: $("page-size"),
  sessions: $("sessions"),
  search: $("search"),
  sort: $("sort"),
};

// `upload`: the resumable upload in progress, if any; `shareTimer`: hides the shared link at its expiry.
const state = { page: 1, pages: 0, login: null, upload: null, shareTimer: null };
const api = new Api(initialApiBase());
const security = setupSecurity({ api, run, say, fail, signedIn: (tokens, message) => enter(tokens, message) });

// --- messages ---------------------------------------------------------------

function say(text) {
  ui.error.textContent = "";
  ui.status.textContent = text;
}

const SIGNED_OUT = new Set(["invalid_token", "invalid_refresh_token", "token_expired"]);

function fail(error) {
  let text = error instanceof Error ? error.message : String(error);
  if (error instanceof ApiError && SIGNED_OUT.has(error.code) && !api.signedIn) {
    text = text.replace(/\.?$/, ". Sign in again.");
  }
  ui.status.textContent = "";
  ui.error.textContent = text;
}

// Runs an action with its button disabled, reporting any failure in the error area.
async function run(button, action) {
  if (button) button.disabled = true;
  try {
    await action();
  } catch (error) {
    fail(error);
  } finally {
    if (button) button.disabled = false;
  }
}

// --- API address ------------------------------------------------------------

// ?api= (what `make web API_URL=…` prints) wins and is remembered, like an address typed on the page.
function initialApiBase() {
  const fromQuery = new URLSearchParams(location.search).get("api");
  if (fromQuery) localStorage.setItem(API_KEY, new Api(fromQuery).base);
  return fromQuery || localStorage.getItem(API_KEY) || DEFAULT_API;
}

ui.apiBase.value = api.base;

ui.apiForm.addEventListener("submit", (event) => {
  event.preventDefault();
  if (!ui.apiBase.checkValidity()) {
    fail(new Error("Enter the API address as a URL, e.g. http://localhost:3000."));
    return;
  }
  api.base = ui.apiBase.value;
  ui.apiBase.value = api.base;
  localStorage.setItem(API_KEY, api.base);
  say(`Using the API at ${api.base}.`);
});

// --- signing in and out -------------------------------------------------------

function showSignedIn(login) {
  state.login = login;
  ui.whoami.textContent = login;
  ui.authView.hidden = true;
  ui.appView.hidden = false;
  ui.account.hidden = false;
}

function showSignedOut() {
  ui.authView.hidden = false;
  ui.appView.hidden = true;
  ui.account.hidden = true;
  ui.whoami.textContent = "";
  ui.files.replaceChildren();
  ui.sessions.replaceChildren();
  ui.password.value = "";
  state.page = 1;
  state.login = null;
  ui.search.value = "";
  if (state.upload) {
    state.upload.stop(`The upload of ${state.upload.file.name} stopped at sign-out; sign in and choose the same file to continue.`);
  }
  hideShare();
  security.reset();
  showUsage(null);
  resetProgress();
  ui.unfinished.hidden = true;
}

// The failed request itself reports the server's message; here only the view changes.
api.onSessionEnded = () => {
  showSignedOut();
};

ui.authForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const signingUp = event.submitter && event.submitter.value === "signup";
  const id = ui.loginId.value.trim();
  const password = ui.password.value;
  if (!id || !password) {
    fail(new Error("Enter your email or phone and your password."));
    return;
  }
  run(event.submitter, async () => {
    let tokens;
    try {
      tokens = signingUp ? await api.signUp(id, password) : await api.signIn(id, password);
    } catch (error) {
      if (security.handleSignInError(error)) return; // the password was right: the second step asks on
      throw error;
    }
    await enter(tokens, signingUp ? `Welcome, ${tokens.id}. Your account is ready.` : `Signed in as ${tokens.id}.`);
  });
});

$("logout").addEventListener("click", (event) => {
  run(event.currentTarget, async () => {
    try {
      await api.logout();
    } finally {
      showSignedOut();
    }
    say("Signed out.");
  });
});

$("reload").addEventListener("click", (event) => {
  run(event.currentTarget, async () => {
    await loadAll();
    if (api.signedIn) say("Up to date.");
  });
});

async function enter(tokens, message) {
  showSignedIn(tokens.id);
  say(message);
  await loadAll();
}

// Everything on the signed-in page, fetched together; the first failure is reported.
async function loadAll() {
  const results = await Promise.allSettled([
    loadInfo(), loadFiles(), loadUsage(), loadSessions(), showUnfinished(), security.load(),
  ]);
  const failed = results.find((result) => result.status === "rejected");
  if (failed) throw failed.reason;
}

async function loadInfo() {
  const info = await api.info();
  ui.whoami.textContent = info.id;
  showVerification(info);
}

// --- proving the login, a forgotten password, leaving (SPEC §10) ----------

const lifecycle = {
  forgot: $("forgot"),
  resetForm: $("reset-form"),
  resetHint: $("reset-hint"),
  resetCode: $("reset-code"),
  resetCodeLabel: $("reset-code-label"),
  resetPassword: $("reset-password"),
  verifyBanner: $("verify-banner"),
  verifyLogin: $("verify-login"),
  verifyCode: $("verify-code"),
  exportButton: $("export"),
  deleteForm: $("delete-account"),
  deletePassword: $("delete-password"),
};
// The token of a message's link this page was opened with (?reset=…), used instead of a typed code.
const linkParams = new URLSearchParams(location.search);
let resetToken = linkParams.get("reset");

function forgetLinkToken(name) {
  const url = new URL(location.href);
  url.searchParams.delete(name);
  history.replaceState(null, "", url);
}

function showVerification(info) {
  lifecycle.verifyBanner.hidden = info.verified;
  lifecycle.verifyLogin.textContent = info.id;
}

function showReset(withCode) {
  lifecycle.resetForm.hidden = false;
  lifecycle.resetCode.hidden = lifecycle.resetCodeLabel.hidden = !withCode;
  lifecycle.resetHint.textContent = withCode
    ? "Enter the 6-digit code from the message we sent you (or open its link), and a new password."
    : "Enter a new password: every device signed in to your account will be signed out.";
  (withCode ? lifecycle.resetCode : lifecycle.resetPassword).focus();
}

lifecycle.forgot.addEventListener("click", (event) => {
  const id = ui.loginId.value.trim();
  if (!id) {
    fail(new Error("Enter your email or phone first, then choose “Forgot password?”."));
    ui.loginId.focus();
    return;
  }
  run(event.currentTarget, async () => {
    await api.forgotPassword(id);
    say(`If ${id} has an account, a message with a code is on its way.`);
    resetToken = null;
    showReset(true);
  });
});

lifecycle.resetForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const password = lifecycle.resetPassword.value;
  const code = lifecycle.resetCode.value.trim();
  if (!password || (!resetToken && !/^[0-9]{6}$/.test(code))) {
    fail(new Error(resetToken ? "Enter a new password." : "Enter the 6-digit code and a new password."));
    return;
  }
  run(event.submitter, async () => {
    const proof = resetToken ? { token: resetToken } : { id: ui.loginId.value.trim(), code };
    const tokens = await api.resetPassword(proof, password);
    resetToken = null;
    forgetLinkToken("reset");
    lifecycle.resetForm.hidden = true;
    lifecycle.resetPassword.value = lifecycle.resetCode.value = "";
    showSignedIn(tokens.id);
    say("Your new password is set; every other device was signed out.");
    await loadAll();
  });
});

$("reset-cancel").addEventListener("click", () => {
  resetToken = null;
  forgetLinkToken("reset");
  lifecycle.resetForm.hidden = true;
});

lifecycle.verifyBanner.addEventListener("submit", (event) => {
  event.preventDefault();
  const code = lifecycle.verifyCode.value.trim();
  if (!/^[0-9]{6}$/.test(code)) {
    fail(new Error("Enter the 6-digit code from the message."));
    return;
  }
  run(event.submitter, async () => {
    const done = await api.confirmVerification({ id: state.login, code });
    lifecycle.verifyCode.value = "";
    lifecycle.verifyBanner.hidden = true;
    say(`${done.id} is confirmed.`);
  });
});

$("verify-resend").addEventListener("click", (event) => {
  run(event.currentTarget, async () => {
    await api.requestVerification();
    say(`A new message is on its way to ${state.login}.`);
  });
});

lifecycle.exportButton.addEventListener("click", (event) => {
  run(event.currentTarget, async () => {
    say("Preparing your data…");
    const zip = await api.exportAccount();
    const link = document.createElement("a");
    link.href = URL.createObjectURL(zip);
    link.download = "account-export.zip";
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
    say(`Your data is downloaded (${humanSize(zip.size)}).`);
  });
});

lifecycle.deleteForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const password = lifecycle.deletePassword.value;
  if (!password) {
    fail(new Error("Enter your password to delete your account."));
    return;
  }
  if (!confirm("Delete your account and every file in it? This cannot be undone.")) return;
  run(event.submitter, async () => {
    const gone = await api.deleteAccount(password, security.secondFactor());
    lifecycle.deletePassword.value = "";
    $("delete-code").value = "";
    showSignedOut();
    say(`The account ${gone.id} and all its files are deleted.`);
  });
});

// Opened from a message's link: ?verify=… is confirmed at once, ?reset=… asks for the new password.
async function followMessageLink() {
  const verifyToken = linkParams.get("verify");
  if (verifyToken) {
    forgetLinkToken("verify");
    await run(null, async () => {
      const done = await api.confirmVerification({ token: verifyToken });
      lifecycle.verifyBanner.hidden = true;
      say(`${done.id} is confirmed. Thank you.`);
    });
  }
  if (resetToken) showReset(false);
}

followMessageLink();

// A reload keeps the session of this tab (the same device in "My devices"), unless a message's link
// is being followed to set a new password.
async function resumeSession() {
  if (resetToken || !api.resumable) return;
  ui.authView.hidden = true; // no sign-in form flashing by while the session comes back
  say("Signing you back in…");
  let tokens = null;
  try {
    await run(null, async () => {
      tokens = await api.resume();
      if (tokens) await enter(tokens, `Signed in as ${tokens.id}.`);
    });
  } finally {
    if (!tokens) {
      ui.authView.hidden = false;
      if (ui.status.textContent === "Signing you back in…") say("");
    }
  }
}

resumeSession();

// --- files ------------------------------------------------------------------

// What the list is narrowed to and ordered by (SPEC §14): the search box and the sort menu.
function finding() {
  return { q: ui.search.value.trim(), sort: ui.sort.value };
}

async function loadFiles() {
  const listSize = Number(ui.pageSize.value);
  let result = await api.listFiles(state.page, listSize, finding());
  if (result.items.length === 0 && result.pages > 0 && state.page > result.pages) {
    // the last page emptied (a delete, or a bigger page size): show the new last page
    state.page = result.pages;
    result = await api.listFiles(state.page, listSize, finding());
  }
  state.pages = result.pages;
  renderFiles(result);
}

// Every render asks for new links (thumbnails): a link is never kept past its expiry.
function renderFiles({ items, page, pages, total }) {
  ui.files.replaceChildren(...items.map(fileRow));
  const searched = ui.search.value.trim();
  const none = searched ? `No file names contain “${searched}”` : "No files yet";
  ui.pageInfo.textContent =
    total === 0 ? none : `Page ${page} of ${pages} · ${total} ${total === 1 ? "file" : "files"}${searched ? ` named like “${searched}”` : ""}`;
  updatePager();
}

function updatePager() {
  ui.prev.disabled = state.page <= 1;
  ui.next.disabled = state.page >= state.pages;
}

// What browsers show without running anything, so the server serves it inline (SPEC §7).
const THUMBNAIL = /^image\/(png|jpeg|gif|webp)$/; // what the server makes thumbnails of (SPEC §14)
const PLAYABLE = /^(audio|video)\//;
const OPENABLE = /^(image\/(?!svg)|application\/pdf$|text\/plain$)/;

function fileRow(file) {
  const row = document.createElement("tr");
  row.dataset.id = String(file.id);

  // name cell: thumbnail, name, type underneath (and the player, when one is open)
  const name = document.createElement("td");
  name.className = "name";
  const about = document.createElement("div");
  about.className = "file";
  const text = document.createElement("div");
  const title = document.createElement("span");
  title.className = "file-name";
  title.textContent = file.name;
  const type = document.createElement("span");
  type.className = "type hint";
  type.textContent = file.mime_type;
  type.title = file.mime_type;
  text.append(title, type);
  if (THUMBNAIL.test(file.mime_type)) about.append(thumbnail(file));
  about.append(text);
  name.append(about);
  row.append(
    name,
    cell(humanSize(file.size), "num size", `${file.size} bytes`),
    cell(localTime(file.updated_at), "updated", file.updated_at),
  );

  const actions = document.createElement("td");
  actions.className = "row-actions";
  const buttons = document.createElement("div");
  buttons.className = "buttons";

  const download = button("Download", `Download ${file.name}`, "download");
  download.addEventListener("click", () => run(download, () => downloadFile(file, buttons)));
  buttons.append(download);

  if (PLAYABLE.test(file.mime_type)) {
    const play = button("Play", `Play ${file.name}`, "play");
    play.addEventListener("click", () => run(play, () => togglePlayer(file, name, play)));
    buttons.append(play);
  } else if (OPENABLE.test(file.mime_type)) {
    const open = button("Open", `Open ${file.name} in a new tab`, "open");
    open.addEventListener("click", () => run(open, () => openFile(file, buttons)));
    buttons.append(open);
  }

  const share = button("Copy link", `Copy a link to ${file.name}`, "copy-link");
  share.addEventListener("click", () => run(share, () => shareLink(file)));

  // a real file input inside a label, so Replace works with the keyboard and screen readers
  const replace = document.createElement("label");
  replace.className = "button secondary replace";
  const picker = document.createElement("input");
  picker.type = "file";
  picker.className = "visually-hidden";
  picker.setAttribute("aria-label", `Replace ${file.name}`);
  picker.addEventListener("change", () => {
    const [chosen] = picker.files;
    if (!chosen) return;
    run(null, async () => {
      try {
        await replaceFile(file, chosen);
      } finally {
        picker.value = ""; // choosing the same file again must fire "change" again
      }
    });
  });
  replace.append("Replace", picker);

  const remove = button("Delete", `Delete ${file.name}`, "delete danger");
  remove.addEventListener("click", () => {
    if (confirm(`Delete “${file.name}”? This cannot be undone.`)) run(remove, () => deleteFile(file));
  });

  buttons.append(share, replace, remove);
  actions.append(buttons);
  row.append(actions);
  return row;
}

// --- links: downloads, thumbnails, players, sharing ---------------------------

// Follows a file link with a plain anchor, so the browser itself downloads the file or opens
// the tab (no fetch, no Blob in memory). The anchor stays until the link expires.
function follow(container, link, className, attributes) {
  const anchor = document.createElement("a");
  anchor.className = className;
  anchor.hidden = true;
  anchor.href = link.url;
  for (const [key, value] of Object.entries(attributes)) anchor.setAttribute(key, value);
  container.querySelector(`a.${className}`)?.remove();
  container.append(anchor);
  setTimeout(() => anchor.remove(), untilExpiry(link));
  anchor.click();
}

async function downloadFile(file, container) {
  const link = await api.link(file.id, "attachment");
  follow(container, link, "download-link", { download: file.name });
  say(`Downloading ${file.name}.`);
}

async function openFile(file, container) {
  const link = await api.link(file.id, "inline");
  follow(container, link, "open-link", { target: "_blank", rel: "noopener noreferrer" });
  say(`Opened ${file.name} in a new tab.`);
}

// The picture of an image file, through an inline link. Should the browser fetch it again after
// the link expired (it answers 410), one new link is asked for; a picture that cannot be shown
// (not decodable, or no link) is left out: the row is still useful without it.
function thumbnail(file) {
  const image = document.createElement("img");
  image.className = "thumb";
  image.alt = "";
  image.width = 40;
  image.height = 40;
  image.decoding = "async";
  image.referrerPolicy = "no-referrer";
  let expiresAt = 0;
  const load = () =>
    api.link(file.id, "inline").then(
      (link) => {
        expiresAt = Date.now() + untilExpiry(link);
        image.src = `${link.url}${link.url.includes("?") ? "&" : "?"}thumbnail=64`; // a small WebP, not the original
      },
      () => image.remove(),
    );
  image.addEventListener("error", () => {
    if (Date.now() >= expiresAt && expiresAt > 0) {
      expiresAt = 0;
      load();
    } else {
      image.remove();
    }
  });
  load();
  return image;
}

async function togglePlayer(file, container, toggle) {
  const playing = container.querySelector(".player");
  if (playing) {
    playing.remove();
    toggle.textContent = "Play";
    return;
  }
  let link = await api.link(file.id, "inline");
  let expiresAt = Date.now() + untilExpiry(link);
  const player = document.createElement(file.mime_type.startsWith("video/") ? "video" : "audio");
  player.className = "player";
  player.controls = true;
  player.preload = "metadata";
  player.src = link.url;
  // The player fetches ranges as it plays; once its link has expired it gets a new one and
  // goes on from where it was.
  player.addEventListener("error", () =>
    run(null, async () => {
      if (!player.isConnected) return;
      if (Date.now() < expiresAt) throw new Error(`This browser cannot play ${file.name}.`);
      const at = player.currentTime;
      link = await api.link(file.id, "inline");
      expiresAt = Date.now() + untilExpiry(link);
      player.src = link.url;
      player.currentTime = at;
    }),
  );
  container.append(player);
  toggle.textContent = "Close player";
}

async function shareLink(file) {
  const link = await api.link(file.id, "attachment");
  const wait = untilExpiry(link);
  const until = clock(new Date(Date.now() + wait));
  ui.shareName.textContent = file.name;
  ui.shareUrl.value = link.url;
  ui.shareExpiry.textContent =
    `Anyone with this link can download the file until ${until} (${duration(link.expires_in)}); ` +
    "after that it stops working.";
  ui.share.hidden = false;
  clearTimeout(state.shareTimer);
  state.shareTimer = setTimeout(() => {
    hideShare();
    say(`The link to ${file.name} has expired.`);
  }, wait);
  try {
    await navigator.clipboard.writeText(link.url);
    say(`Copied a link to ${file.name}; it expires at ${until}.`);
  } catch {
    // no clipboard access here (an insecure origin, or the page lost focus): copy it by hand
    ui.shareUrl.focus();
    ui.shareUrl.select();
    say(`A link to ${file.name} is below; it expires at ${until}.`);
  }
}

function hideShare() {
  clearTimeout(state.shareTimer);
  ui.share.hidden = true;
  ui.shareUrl.value = "";
}

// Milliseconds this link has left, by this browser's clock: expires_in counts from the moment
// the server issued it, so a second is taken off for the trip.
function untilExpiry(link) {
  return Math.max(0, (link.expires_in - 1) * 1000);
}

// --- usage ------------------------------------------------------------------

async function loadUsage() {
  showUsage(await api.usage());
}

function showUsage(usage) {
  ui.usage.hidden = usage === null;
  if (usage === null) return;
  const { files, bytes, quota } = usage;
  const count = `${files} ${files === 1 ? "file" : "files"}`;
  ui.usage.dataset.bytes = String(bytes);
  ui.usageBar.hidden = quota === null;
  if (quota === null) {
    ui.usageText.textContent = `${humanSize(bytes)} in ${count} · unlimited`;
    ui.usageText.title = `${bytes} bytes; no quota`;
    return;
  }
  ui.usageBar.max = quota;
  ui.usageBar.high = quota * 0.9;
  ui.usageBar.value = bytes;
  const percent = Math.min(100, Math.floor((bytes / quota) * 100));
  ui.usageText.textContent = `${humanSize(bytes)} of ${humanSize(quota)} used (${percent} %) · ${count}`;
  ui.usageText.title = `${bytes} of ${quota} bytes`;
}

// --- uploads ----------------------------------------------------------------

// Every file is tried, one after another; a refused one does not stop the rest (a cancel does), and
// the end says what went and what did not, and why.
async function uploadFiles(files) {
  let done = 0;
  const refused = [];
  try {
    for (const [index, file] of files.entries()) {
      const counter = files.length > 1 ? ` (${index + 1} of ${files.length})` : "";
      try {
        const stored = await (file.size >= RESUMABLE_FROM ? uploadResumable(file, counter) : uploadOne(file, counter));
        done += 1;
        say(`Uploaded ${stored.name} (${humanSize(stored.size)}).`);
      } catch (error) {
        if (files.length === 1 || (error instanceof ApiError && CANCELLED.has(error.code))) throw error;
        refused.push(`${file.name}: ${error.message}`);
      }
    }
  } finally {
    if (done > 0) {
      state.page = 1; // newest first: the new files are on the first page
      await Promise.all([loadFiles(), loadUsage()]);
    }
  }
  if (refused.length > 0) {
    ui.uploadLabel.textContent = `${done} of ${files.length} uploaded`;
    throw new Error(`Uploaded ${done} of ${files.length} files. Not uploaded: ${refused.join("; ")}`);
  }
  ui.uploadLabel.textContent = done === 1 ? "Upload complete" : `${done} uploads complete`;
  if (done > 1) say(`Uploaded ${done} files.`);
}

// The person stopped the batch: the files after it are not tried.
const CANCELLED = new Set(["aborted", "cancelled"]);

async function uploadOne(file, counter) {
  ui.uploadLabel.textContent = `Uploading ${file.name}${counter}`;
  try {
    return await api.upload(file, showProgress);
  } catch (error) {
    uploadFailed(file);
    throw error;
  }
}

// Large files go in 8 MiB chunks that survive a lost connection, a pause or a page reload.
async function uploadResumable(file, counter) {
  const upload = new ResumableUpload(api, state.login, file);
  let interrupted = false;
  upload.onProgress = (sent, total) => {
    if (interrupted && upload.running) {
      interrupted = false;
      ui.uploadLabel.textContent = `Uploading ${file.name}${counter}`;
      say(`Reconnected; ${file.name} continues.`);
    }
    showProgress(sent, total);
  };
  upload.onChange = () => {
    showUploadControls(upload);
    if (interrupted && upload.running) {
      interrupted = false;
      ui.uploadLabel.textContent = `Uploading ${file.name}${counter}`;
      say(`Resumed ${file.name}.`);
    }
  };
  upload.onReconnecting = (attempt) => {
    interrupted = true;
    ui.uploadLabel.textContent = `Reconnecting… ${file.name}${counter}`;
    say(`Connection to the server lost; reconnecting (attempt ${attempt}).`);
  };
  upload.onInterrupted = (error) => {
    interrupted = true;
    fail(error);
    ui.uploadLabel.textContent = `Interrupted: ${file.name}${counter}`;
  };
  state.upload = upload;
  ui.unfinished.hidden = true;
  try {
    await upload.start();
    ui.uploadLabel.textContent = `${upload.resuming ? "Resuming" : "Uploading"} ${file.name}${counter}`;
    const id = await upload.done;
    // the completing answer names the file (X-File-Id); its object says what was stored
    return id > 0 ? await api.file(id) : { name: file.name, size: file.size };
  } catch (error) {
    uploadFailed(file);
    throw error;
  } finally {
    state.upload = null;
    showUploadControls(null);
  }
}

function showUploadControls(upload) {
  ui.pause.hidden = !upload || !upload.running;
  ui.resume.hidden = !upload || upload.running;
  ui.cancel.hidden = !upload;
}

ui.pause.addEventListener("click", () => {
  const upload = state.upload;
  if (!upload) return;
  upload.pause();
  ui.uploadLabel.textContent = `Paused: ${upload.file.name}`;
  say(`Paused at ${ui.percent.textContent}. Resume continues from there, even after a page reload.`);
});

ui.resume.addEventListener("click", () => {
  const upload = state.upload;
  if (!upload) return;
  upload.resume();
  ui.uploadLabel.textContent = `Uploading ${upload.file.name}`;
  say(`Resumed ${upload.file.name}.`);
});

ui.cancel.addEventListener("click", () => {
  if (state.upload) state.upload.cancel();
});

// Uploads this user left unfinished in this browser (a reload, a closed tab, a lost network).
async function showUnfinished() {
  const left = state.login && !state.upload ? await unfinishedUploads(api, state.login) : [];
  ui.unfinished.hidden = left.length === 0;
  ui.unfinished.textContent =
    `Unfinished: ${left.map((upload) => `${upload.name} (${humanSize(upload.size)})`).join(", ")}. ` +
    "Choose the same file and press Upload to continue where it stopped.";
}

async function replaceFile(file, chosen) {
  ui.uploadLabel.textContent = `Replacing ${file.name} with ${chosen.name}`;
  let stored;
  try {
    stored = await api.replace(file.id, chosen, showProgress);
  } catch (error) {
    uploadFailed(chosen);
    throw error;
  }
  ui.uploadLabel.textContent = "Replace complete";
  say(`Replaced ${file.name} with ${stored.name} (${humanSize(stored.size)}).`);
  await Promise.all([loadFiles(), loadUsage()]);
}

async function deleteFile(file) {
  await api.deleteFile(file.id);
  say(`Deleted ${file.name}.`);
  await Promise.all([loadFiles(), loadUsage()]);
}

function showProgress(loaded, total) {
  const percent = total > 0 ? Math.floor((loaded / total) * 100) : 100;
  ui.progress.value = percent;
  ui.percent.textContent = `${percent} %`;
}

function resetProgress() {
  ui.progress.value = 0;
  ui.percent.textContent = "0 %";
  ui.uploadLabel.textContent = "No upload yet";
}

// A refused or failed upload stored nothing: the bar goes back to empty, the error area says why.
function uploadFailed(file) {
  ui.progress.value = 0;
  ui.percent.textContent = "0 %";
  ui.uploadLabel.textContent = `Not uploaded: ${file.name}`;
}

ui.uploadForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const files = [...ui.uploadFile.files];
  if (files.length === 0) {
    fail(new Error("Choose a file to upload."));
    return;
  }
  say(""); // an earlier failure is not this upload's
  run(ui.uploadButton, async () => {
    try {
      await uploadFiles(files);
    } finally {
      ui.uploadForm.reset();
      await showUnfinished();
    }
  });
});

// Searching waits for a pause in typing; each new search or order starts at page 1.
let searchTimer = null;
function findAgain() {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => {
    state.page = 1;
    run(null, loadFiles);
  }, 250);
}
ui.search.addEventListener("input", findAgain);
ui.sort.addEventListener("change", findAgain);
$("find").addEventListener("submit", (event) => {
  event.preventDefault();
  findAgain();
});

// Both page buttons stay disabled while a page loads, so quick clicks cannot skip pages.
function turnPage(delta) {
  const from = state.page;
  ui.prev.disabled = true;
  ui.next.disabled = true;
  run(null, async () => {
    state.page = Math.max(1, from + delta);
    try {
      await loadFiles();
    } catch (error) {
      state.page = from;
      throw error;
    } finally {
      updatePager();
    }
  });
}

ui.prev.addEventListener("click", () => turnPage(-1));
ui.next.addEventListener("click", () => turnPage(1));

ui.pageSize.addEventListener("change", () => {
  state.page = 1;
  run(null, loadFiles);
});

// --- devices ----------------------------------------------------------------

async function loadSessions() {
  const { items } = await api.sessions();
  ui.sessions.replaceChildren(...items.map(sessionItem));
}

function sessionItem(session) {
  const item = document.createElement("li");
  item.dataset.id = session.id;
  if (session.current) item.classList.add("current");

  const about = document.createElement("div");
  const title = document.createElement("strong");
  title.textContent = describeAgent(session.user_agent);
  const details = document.createElement("span");
  details.className = "hint";
  details.textContent =
    `${session.ip || "unknown address"} · signed in ${localTime(session.created_at)}` +
    ` · last used ${localTime(session.last_used_at)}`;
  details.title = session.user_agent || "";
  about.append(title, " ", details);
  item.append(about);

  if (session.current) {
    const mark = document.createElement("span");
    mark.className = "badge";
    mark.textContent = "This device";
    item.append(mark);
  } else {
    const end = button("Sign out this device", `Sign out ${title.textContent} (${session.ip || "unknown address"})`, "end-session");
    end.addEventListener("click", () =>
      run(end, async () => {
        await api.endSession(session.id);
        say("That device is signed out.");
        await loadSessions();
      }),
    );
    item.append(end);
  }
  return item;
}

// Most specific first: Edge and Opera also say "Chrome", Chrome also says "Safari".
const BROWSERS = ["Edg", "OPR", "Firefox", "HeadlessChrome", "Chromium", "Chrome", "Safari"];
const SYSTEMS = ["Windows", "Android", "iPhone", "iPad", "Mac OS X", "CrOS", "Linux"];

function describeAgent(agent) {
  if (!agent) return "Unknown device";
  const browser = BROWSERS.find((name) => agent.includes(`${name}/`));
  const system = SYSTEMS.find((name) => agent.includes(name));
  if (!browser) return agent.length > 60 ? `${agent.slice(0, 60)}…` : agent;
  const shown = browser === "Edg" ? "Edge" : browser === "OPR" ? "Opera" : browser;
  return `${shown}${system ? ` on ${system}` : ""}`;
}

// --- helpers ----------------------------------------------------------------

function cell(text, className, title) {
  const td = document.createElement("td");
  td.className = className;
  td.textContent = text;
  if (title) td.title = title;
  return td;
}

function button(text, label, className) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = className;
  b.textContent = text;
  b.setAttribute("aria-label", label);
  return b;
}

function humanSize(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = -1;
  do {
    value /= 1024;
    unit += 1;
  } while (value >= 1024 && unit < units.length - 1);
  return `${value.toFixed(1)} ${units[unit]}`;
}

const TIME_FORMAT = { dateStyle: "medium", timeStyle: "short" };
const CLOCK_FORMAT = { hour: "2-digit", minute: "2-digit", second: "2-digit" };

function clock(moment) {
  return moment.toLocaleTimeString(undefined, CLOCK_FORMAT);
}

function duration(seconds) {
  if (seconds < 120) return `${seconds} s`;
  if (seconds < 7200) return `${Math.round(seconds / 60)} min`;
  return `${Math.round(seconds / 3600)} h`;
}

function localTime(iso) {
  if (!iso) return "—";
  const moment = new Date(iso);
  return Number.isNaN(moment.getTime()) ? iso : moment.toLocaleString(undefined, TIME_FORMAT);
}

showSignedOut();
