import { Api, ApiError } from "./api.js";
import { RESUMABLE_FROM, ResumableUpload, unfinishedUploads } from "./resumable.js";
import { setupSecurity } from "./security.js";
import { duration, explain, humanSize } from "./words.js";

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
  selectAll: $("select-all"),
  deleteSelected: $("delete-selected"),
  filesCard: $("files").closest("section"),
  speed: $("upload-speed"),
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

// `upload`: the resumable upload in progress, if any; `uploading`: files are being sent (leaving would stop them);
// `selected`: ids of the files ticked on this page; `longestLink`: the server's LINK_MAX_TTL, once it refused a
// longer link; `followingLink`: a file link is being followed (a download, not leaving the page).
const state = {
  page: 1, pages: 0, login: null, upload: null, uploading: false, selected: new Set(), longestLink: null,
  followingLink: false,
};
const api = new Api(initialApiBase());
const security = setupSecurity({
  api, run, say, markFields, clearFields, signedIn: (tokens, message) => enter(tokens, message),
});

// --- messages ---------------------------------------------------------------

function say(text) {
  ui.error.textContent = "";
  ui.status.textContent = text;
}

const SIGNED_OUT = new Set(["invalid_token", "invalid_refresh_token", "token_expired"]);

// A failure in people's words: next to the fields of `form` it is about (if any), else in the error area.
function fail(error, form = null) {
  const { text, fields } = explain(error);
  ui.status.textContent = "";
  if (form && markFields(form, fields)) {
    ui.error.textContent = "";
    return;
  }
  const signedOut = error instanceof ApiError && SIGNED_OUT.has(error.code) && !api.signedIn;
  ui.error.textContent = signedOut ? text.replace(/\.?$/, ". Sign in again.") : text;
}

// Runs an action with its button disabled, reporting any failure (next to the fields of `form`, if given).
async function run(button, action, form = null) {
  if (button) button.disabled = true;
  if (form) clearFields(form);
  try {
    await action();
  } catch (error) {
    fail(error, form);
  } finally {
    if (button) button.disabled = false;
  }
}

// --- messages next to their fields ----------------------------------------------

// Puts each field's words right under it (aria-invalid, and read out with the field through
// aria-describedby) and moves the focus to the first; answers whether any field of `form` matched.
function markFields(form, fields) {
  clearFields(form);
  let first = null;
  for (const [name, words] of Object.entries(fields)) {
    const input = form.querySelector(`[name="${CSS.escape(name)}"]`);
    if (!input || input.closest("[hidden]")) continue;
    const note = document.createElement("p");
    note.className = "field-error";
    note.id = `${input.id}-error`;
    note.textContent = words;
    input.dataset.hint ??= input.getAttribute("aria-describedby") || "";
    input.setAttribute("aria-describedby", `${note.id} ${input.dataset.hint}`.trim());
    input.setAttribute("aria-invalid", "true");
    let after = input.parentElement.classList.contains("inline") ? input.parentElement : input;
    while (after.nextElementSibling?.classList.contains("field-error")) after = after.nextElementSibling;
    after.after(note); // a second message goes under the first, in the fields' order
    first ??= input;
  }
  first?.focus();
  return first !== null;
}

function clearField(input) {
  if (input.getAttribute("aria-invalid") !== "true") return;
  document.getElementById(`${input.id}-error`)?.remove();
  input.removeAttribute("aria-invalid");
  if (input.dataset.hint) input.setAttribute("aria-describedby", input.dataset.hint);
  else input.removeAttribute("aria-describedby");
}

function clearFields(form) {
  form.querySelectorAll("[aria-invalid=true]").forEach(clearField);
}

// Typing in a field takes its message away.
document.addEventListener("input", (event) => {
  if (event.target instanceof HTMLElement && event.target.matches("[aria-invalid=true]")) clearField(event.target);
});

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
  state.longestLink = null;
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
  if (share.dialog.open) share.dialog.close();
  state.selected.clear();
  showSelection();
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
  const missing = {};
  if (!id) missing.id = "Enter your email address or phone number.";
  if (!password) missing.password = signingUp ? "Choose a password of 8 to 128 characters." : "Enter your password.";
  if (markFields(ui.authForm, missing)) {
    say("");
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
  }, ui.authForm);
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
  clearFields(lifecycle.resetForm);
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
  const missing = {};
  if (!resetToken && !/^[0-9]{6}$/.test(code)) missing.code = "Enter the 6-digit code from the message.";
  if (!password) missing.password = "Choose a new password of 8 to 128 characters.";
  if (markFields(lifecycle.resetForm, missing)) return;
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
  }, lifecycle.resetForm);
});

$("reset-cancel").addEventListener("click", () => {
  resetToken = null;
  forgetLinkToken("reset");
  lifecycle.resetForm.hidden = true;
});

lifecycle.verifyBanner.addEventListener("submit", (event) => {
  event.preventDefault();
  const code = lifecycle.verifyCode.value.trim();
  if (markFields(lifecycle.verifyBanner, /^[0-9]{6}$/.test(code) ? {} : { code: "Enter the 6-digit code from the message." })) {
    return;
  }
  run(event.submitter, async () => {
    const done = await api.confirmVerification({ id: state.login, code });
    lifecycle.verifyCode.value = "";
    lifecycle.verifyBanner.hidden = true;
    say(`${done.id} is confirmed.`);
  }, lifecycle.verifyBanner);
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
  if (markFields(lifecycle.deleteForm, password ? {} : { current_password: "Enter your password to delete your account." })) {
    return;
  }
  if (!confirm("Delete your account and every file in it? This cannot be undone.")) return;
  run(event.submitter, async () => {
    const gone = await api.deleteAccount(password, security.secondFactor());
    lifecycle.deletePassword.value = "";
    $("delete-code").value = "";
    showSignedOut();
    say(`The account ${gone.id} and all its files are deleted.`);
  }, lifecycle.deleteForm);
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
  const shown = new Set(items.map((file) => file.id));
  for (const id of state.selected) if (!shown.has(id)) state.selected.delete(id);
  ui.files.replaceChildren(...items.map(fileRow));
  showSelection();
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

  // a tick for "Delete selected"; its label is the touch target
  const pick = document.createElement("td");
  pick.className = "pick-cell";
  const [tick, box] = inputInLabel("pick", "checkbox", "select", `Select ${file.name}`);
  box.checked = state.selected.has(file.id);
  box.addEventListener("change", () => {
    if (box.checked) state.selected.add(file.id);
    else state.selected.delete(file.id);
    showSelection();
  });
  pick.append(tick);
  row.append(pick);

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

  const share = button("Share", `Share ${file.name}`, "share");
  share.addEventListener("click", () => openShare(file));

  // a real file input inside a label, so Replace works with the keyboard and screen readers
  const [replace, picker] = inputInLabel("button secondary replace", "file", "visually-hidden", `Replace ${file.name}`);
  replace.append("Replace");
  picker.addEventListener("change", () => {
    const [chosen] = picker.files;
    if (!chosen) return;
    if (state.uploading) {
      picker.value = "";
      fail(new Error(`An upload is still running; replace ${file.name} when it has finished.`));
      return;
    }
    run(null, async () => {
      try {
        await replaceFile(file, chosen);
      } finally {
        picker.value = ""; // choosing the same file again must fire "change" again
      }
    });
  });

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
  // A link on another origin is followed as a navigation (that turns into a download or a new tab): the
  // page is not being left, so it must not ask.
  state.followingLink = true;
  anchor.click();
  setTimeout(() => {
    state.followingLink = false;
  }, 1000);
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

// --- sharing: a link with the expiry and the kind (download or view) the person chooses ----

const share = {
  dialog: $("share"),
  form: $("share-form"),
  name: $("share-name"),
  inline: $("share-inline"),
  inlineHint: $("share-inline-hint"),
  expires: $("share-expires"),
  create: $("share-create"),
  result: $("share-result"),
  url: $("share-url"),
  copy: $("share-copy"),
  expiry: $("share-expiry"),
  file: null,
  timer: null,
  ticket: 0, // which Create the dialog is waiting for: an answer to an older one is dropped
};

function openShare(file) {
  share.ticket += 1;
  share.file = file;
  share.name.textContent = `“${file.name}”`;
  const viewable = OPENABLE.test(file.mime_type) || PLAYABLE.test(file.mime_type);
  share.inline.disabled = !viewable;
  share.inlineHint.hidden = viewable;
  if (!viewable) share.form.elements.disposition.value = "attachment";
  forgetSharedLink();
  clearFields(share.form);
  share.dialog.showModal();
}

function forgetSharedLink() {
  clearTimeout(share.timer);
  share.result.hidden = true;
  share.url.value = "";
  share.expiry.textContent = "";
}

// The longest a server keeps links (LINK_MAX_TTL), read from its refusal of a longer one.
function longestLink(error) {
  const reason = error instanceof ApiError && error.details?.fields?.expires_in;
  const limit = reason && Number(String(reason).match(/to (\d+)$/)?.[1]);
  return limit > 0 ? limit : null;
}

share.form.addEventListener("submit", (event) => {
  event.preventDefault();
  const file = share.file;
  const disposition = share.form.elements.disposition.value;
  const chosen = Number(share.expires.value);
  const ticket = ++share.ticket;
  const current = () => share.dialog.open && share.ticket === ticket;
  clearFields(share.form);
  share.create.disabled = true;
  (async () => {
    let wanted = Math.min(chosen, state.longestLink ?? Infinity);
    let link;
    try {
      link = await api.link(file.id, disposition, wanted);
    } catch (error) {
      const longest = longestLink(error);
      if (longest === null) throw error;
      wanted = state.longestLink = longest; // this server keeps links for less: the longest it allows
      link = await api.link(file.id, disposition, wanted);
    }
    if (current()) showSharedLink(file, link, wanted < chosen);
  })()
    .catch((error) => {
      if (current() && error instanceof ApiError && error.details?.fields?.expires_in) {
        markFields(share.form, { expires_in: explain(error).text });
        return;
      }
      if (share.dialog.open && share.ticket === ticket) share.dialog.close();
      fail(error);
    })
    .finally(() => {
      share.create.disabled = false;
    });
});

function showSharedLink(file, link, shortened) {
  forgetSharedLink();
  const wait = untilExpiry(link);
  const what = link.disposition === "inline" ? "view" : "download";
  const end = new Date(Date.now() + wait);
  share.url.value = link.url;
  share.expiry.textContent =
    `Anyone with this link can ${what} ${file.name} until ${wait > 43_200_000 ? localTime(end) : clock(end)} ` +
    `(${duration(link.expires_in)}${shortened ? ", the longest this server allows" : ""}); after that it stops ` +
    "working, or sooner if you sign out on this device or replace or delete the file.";
  share.result.hidden = false;
  share.url.closest(".inline").hidden = false;
  share.url.focus();
  share.url.select();
  share.timer = setTimeout(() => {
    forgetSharedLink();
    share.expiry.textContent = `The link to ${file.name} has expired. Create a new one if you still need it.`;
    share.result.hidden = false;
    share.url.closest(".inline").hidden = true;
  }, wait);
}

share.copy.addEventListener("click", async () => {
  try {
    await navigator.clipboard.writeText(share.url.value);
    share.copy.textContent = "Copied";
  } catch {
    // no clipboard here (an insecure origin, or no permission): the link is selected for Ctrl+C / ⌘C
    share.url.focus();
    share.url.select();
    share.copy.textContent = "Press Ctrl+C";
  }
  setTimeout(() => {
    share.copy.textContent = "Copy";
  }, 2500);
});

$("share-close").addEventListener("click", () => share.dialog.close());
// Closing (Close, Escape) forgets the link, and gives the focus back to the row's Share (the list may have
// been drawn anew meanwhile).
share.dialog.addEventListener("close", () => {
  forgetSharedLink();
  const back = share.file && ui.files.querySelector(`tr[data-id="${share.file.id}"] button.share`);
  (back || ui.selectAll).focus();
});

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
        if (files.length === 1 || (error instanceof ApiError && CANCELLED.has(error.code))) {
          throw aboutFile(error, file);
        }
        refused.push(explain(error, { file }).text);
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
    throw new Error(`Uploaded ${done} of ${files.length} files. Not uploaded: ${refused.join(" ")}`);
  }
  ui.uploadLabel.textContent = done === 1 ? "Upload complete" : `${done} uploads complete`;
  if (done > 1) say(`Uploaded ${done} files.`);
}

// An upload's failure carries its file, so its words name the file and its size (words.js explain).
function aboutFile(error, file) {
  error.file = file;
  return error;
}
// The person stopped the batch: the files after it are not tried.
const CANCELLED = new Set(["aborted", "cancelled"]);

async function uploadOne(file, counter) {
  resetSpeed();
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
  resetSpeed();
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
    resetSpeed();
    ui.uploadLabel.textContent = `Reconnecting… ${file.name}${counter}`;
    say(`Connection to the server lost; reconnecting (attempt ${attempt}).`);
  };
  upload.onInterrupted = (error) => {
    interrupted = true;
    resetSpeed();
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
  resetSpeed();
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
  resetSpeed();
  let stored;
  state.uploading = true;
  try {
    stored = await api.replace(file.id, chosen, showProgress);
  } catch (error) {
    uploadFailed(chosen);
    throw aboutFile(error, chosen);
  } finally {
    state.uploading = false;
  }
  ui.uploadLabel.textContent = "Replace complete";
  say(`Replaced ${file.name} with ${stored.name} (${humanSize(stored.size)}).`);
  await Promise.all([loadFiles(), loadUsage()]);
}

async function deleteFile(file) {
  await api.deleteFile(file.id);
  state.selected.delete(file.id);
  say(`Deleted ${file.name}.`);
  await Promise.all([loadFiles(), loadUsage()]);
}

// --- several files at once ------------------------------------------------------

function showSelection() {
  const boxes = [...ui.files.querySelectorAll("input.select")];
  const count = state.selected.size;
  ui.deleteSelected.disabled = count === 0;
  ui.deleteSelected.textContent = count === 0 ? "Delete selected" : `Delete ${count} selected`;
  ui.selectAll.checked = boxes.length > 0 && count === boxes.length;
  ui.selectAll.indeterminate = count > 0 && count < boxes.length;
  ui.selectAll.disabled = boxes.length === 0;
}

ui.selectAll.addEventListener("change", () => {
  for (const box of ui.files.querySelectorAll("input.select")) {
    box.checked = ui.selectAll.checked;
    const id = Number(box.closest("tr").dataset.id);
    if (box.checked) state.selected.add(id);
    else state.selected.delete(id);
  }
  showSelection();
});

// One confirmation for all of them; each is deleted on its own, so one that fails (already gone
// elsewhere) does not keep the others.
ui.deleteSelected.addEventListener("click", () => {
  const ids = [...state.selected];
  if (ids.length === 0) return;
  const names = ids.map((id) => ui.files.querySelector(`tr[data-id="${id}"] .file-name`)?.textContent ?? `#${id}`);
  const what = ids.length === 1 ? `“${names[0]}”` : `these ${ids.length} files`;
  if (!confirm(`Delete ${what}? This cannot be undone.`)) return;
  ui.deleteSelected.disabled = true; // until the list is loaded again (showSelection)
  for (const box of ui.files.querySelectorAll("input.select")) box.disabled = true;
  ui.selectAll.focus(); // the focused button goes disabled: keep the keyboard's place near it
  run(null, async () => {
    const results = await Promise.allSettled(ids.map((id) => api.deleteFile(id)));
    // gone already (deleted elsewhere) counts as deleted; any other failure keeps its file ticked
    const failedIds = ids.filter((_, index) =>
      results[index].status === "rejected" && results[index].reason?.code !== "not_found");
    const failed = failedIds.map((id) => `${names[ids.indexOf(id)]}: ${explain(results[ids.indexOf(id)].reason).text}`);
    state.selected = new Set(failedIds);
    try {
      await Promise.all([loadFiles(), loadUsage()]);
    } finally {
      for (const box of ui.files.querySelectorAll("input.select")) box.disabled = false;
      showSelection();
      if (failed.length > 0) fail(new Error(`Deleted ${ids.length - failed.length} of ${ids.length}. Not deleted: ${failed.join(" ")}`));
    }
    if (failed.length === 0) say(ids.length === 1 ? `Deleted ${names[0]}.` : `Deleted ${ids.length} files.`);
  });
});

// Speed over the last few seconds of progress (a moving window, so a pause or a burst soon stops
// counting), and the time left at that speed.
const SPEED_WINDOW_MS = 4000;
let samples = [];

function showProgress(loaded, total) {
  const percent = total > 0 ? Math.floor((loaded / total) * 100) : 100;
  ui.progress.value = percent;
  ui.percent.textContent = `${percent} %`;
  const now = performance.now();
  if (samples.length > 0 && loaded < samples[samples.length - 1].loaded) samples = []; // the next file
  samples.push({ at: now, loaded });
  while (samples.length > 2 && now - samples[0].at > SPEED_WINDOW_MS) samples.shift();
  const first = samples[0];
  const seconds = (now - first.at) / 1000;
  if (loaded >= total) {
    ui.speed.textContent = "";
  } else if (seconds >= 0.5 && loaded > first.loaded) {
    const speed = (loaded - first.loaded) / seconds;
    ui.speed.textContent = `${humanSize(Math.round(speed))}/s · about ${duration((total - loaded) / speed)} left`;
  }
}

// A pause, a reconnection or the next file starts the speed anew: an idle gap is no speed.
function resetSpeed() {
  samples = [];
  ui.speed.textContent = "";
}

function resetProgress() {
  ui.progress.value = 0;
  ui.percent.textContent = "0 %";
  ui.uploadLabel.textContent = "No upload yet";
  resetSpeed();
}

// A refused or failed upload stored nothing: the bar goes back to empty, the error area says why.
function uploadFailed(file) {
  ui.progress.value = 0;
  ui.percent.textContent = "0 %";
  resetSpeed();
  ui.uploadLabel.textContent = `Not uploaded: ${file.name}`;
}

ui.uploadForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const files = [...ui.uploadFile.files];
  if (files.length === 0) {
    markFields(ui.uploadForm, { file: "Choose a file to upload, or drop files on the list." });
    return;
  }
  startUploads(files);
});

function startUploads(files) {
  if (state.uploading) {
    fail(new Error("An upload is still running; drop or choose the next files when it has finished."));
    return;
  }
  say(""); // an earlier failure is not this upload's
  clearFields(ui.uploadForm);
  state.uploading = true;
  run(ui.uploadButton, async () => {
    try {
      await uploadFiles(files);
    } finally {
      state.uploading = false;
      ui.uploadForm.reset();
      await showUnfinished();
    }
  });
}

// Files dropped anywhere on the files card are uploaded like chosen ones; a drop elsewhere on the page
// is refused rather than letting the browser leave the page to show the file. One handler on the window
// decides (a dropEffect set on the card would be overwritten as the event bubbles up).
function dragsFiles(event) {
  return event.dataTransfer && [...event.dataTransfer.types].includes("Files");
}

function overTheList(event) {
  return event.target instanceof Node && ui.filesCard.contains(event.target) && !ui.appView.hidden;
}

// dragover repeats every few milliseconds while files are held over the page; when it stops (they left the
// window, or the drag was given up) the highlight goes.
let dragTimer = null;
window.addEventListener("dragover", (event) => {
  if (!dragsFiles(event)) return;
  event.preventDefault();
  const inside = overTheList(event);
  event.dataTransfer.dropEffect = inside ? "copy" : "none";
  ui.filesCard.classList.toggle("dropping", inside);
  clearTimeout(dragTimer);
  dragTimer = setTimeout(() => ui.filesCard.classList.remove("dropping"), 300);
});
window.addEventListener("drop", (event) => {
  if (!dragsFiles(event)) return;
  event.preventDefault();
  clearTimeout(dragTimer);
  ui.filesCard.classList.remove("dropping");
  if (!overTheList(event)) return;
  const items = [...event.dataTransfer.items].filter((item) => item.kind === "file");
  const folders = items.filter((item) => item.webkitGetAsEntry?.()?.isDirectory).length;
  const files = [...event.dataTransfer.files].filter((_, index) => !items[index]?.webkitGetAsEntry?.()?.isDirectory);
  if (folders > 0) fail(new Error("Folders cannot be uploaded; drop the files inside them."));
  if (files.length > 0) startUploads(files);
});

// Leaving or reloading the page mid-upload stops it (a resumable one can go on later, a plain one is lost):
// the browser asks first.
window.addEventListener("beforeunload", (event) => {
  if (!state.uploading || state.followingLink) return;
  event.preventDefault();
  event.returnValue = "An upload is running."; // older browsers ask only when this is set (not empty)
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

// An <input> inside its <label>: the whole label is the control's target.
function inputInLabel(labelClass, type, inputClass, ariaLabel) {
  const label = document.createElement("label");
  label.className = labelClass;
  const input = document.createElement("input");
  input.type = type;
  input.className = inputClass;
  input.setAttribute("aria-label", ariaLabel);
  label.append(input);
  return [label, input];
}

function button(text, label, className) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = className;
  b.textContent = text;
  b.setAttribute("aria-label", label);
  return b;
}

const TIME_FORMAT = { dateStyle: "medium", timeStyle: "short" };
const CLOCK_FORMAT = { hour: "2-digit", minute: "2-digit", second: "2-digit" };

function clock(moment) {
  return moment.toLocaleTimeString(undefined, CLOCK_FORMAT);
}

function localTime(iso) {
  if (!iso) return "—";
  const moment = new Date(iso);
  return Number.isNaN(moment.getTime()) ? iso : moment.toLocaleString(undefined, TIME_FORMAT);
}

showSignedOut();
