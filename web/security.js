// Sign-in security on the page (SPEC §11): the second step of a sign-in, the authenticator app with its
// recovery codes, and passkeys.

import { ApiError } from "./api.js";
import { passkeysSupported } from "./webauthn.js";

const $ = (id) => document.getElementById(id);

// What a person types in one field: 6 digits (spaces allowed, as apps show "123 456") are a code of the
// app; anything else is a recovery code.
export function secondFactorOf(text) {
  const digits = text.replace(/\s+/g, "");
  return /^[0-9]{6}$/.test(digits) ? { code: digits } : { recovery_code: text.trim() };
}

// A cancelled or refused browser dialog is no error of the service: say it plainly.
function passkeyError(error) {
  if (error instanceof ApiError) return error;
  if (error && (error.name === "NotAllowedError" || error.name === "AbortError")) {
    return new Error("No passkey was used (the request was cancelled or timed out).");
  }
  if (error && error.name === "InvalidStateError") return new Error("This device already holds a passkey for this account.");
  return new Error(`The browser could not use a passkey: ${error && error.message ? error.message : error}`);
}

export function setupSecurity({ api, run, say, markFields, clearFields, signedIn }) {
  const ui = {
    authForm: $("auth-form"),
    loginId: $("login-id"),
    passkeySignIn: $("passkey-signin"),
    mfaForm: $("mfa-form"),
    mfaCode: $("mfa-code"),
    mfaPasskey: $("mfa-passkey"),
    totpState: $("totp-state"),
    totpSetup: $("totp-setup"),
    totpEnrol: $("totp-enrol"),
    totpQr: $("totp-qr"),
    totpSecret: $("totp-secret"),
    totpCode: $("totp-code"),
    recovery: $("recovery"),
    recoveryCodes: $("recovery-codes"),
    totpOff: $("totp-off"),
    totpOffPassword: $("totp-off-password"),
    totpOffCode: $("totp-off-code"),
    passkeys: $("passkeys"),
    passkeyAdd: $("passkey-add"),
    passkeysHint: $("passkeys-hint"),
    deleteCode: $("delete-code"),
  };
  let mfaToken = null;

  if (!passkeysSupported()) {
    ui.passkeySignIn.hidden = true;
    ui.passkeyAdd.disabled = true;
    ui.passkeysHint.textContent = "This browser cannot use passkeys.";
  }

  // --- signing in -----------------------------------------------------------

  function askSecondFactor(details) {
    mfaToken = details.mfa_token;
    clearFields(ui.mfaForm);
    ui.authForm.hidden = true;
    ui.mfaForm.hidden = false;
    ui.mfaPasskey.hidden = !(passkeysSupported() && (details.methods || []).includes("passkey"));
    ui.mfaCode.value = "";
    ui.mfaCode.focus();
    say("Your password is right. Now the code from your authenticator app.");
  }

  function leaveSecondFactor() {
    mfaToken = null;
    clearFields(ui.mfaForm);
    ui.mfaForm.hidden = true;
    ui.authForm.hidden = false;
  }

  ui.mfaForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const typed = ui.mfaCode.value.trim();
    if (!typed) {
      markFields(ui.mfaForm, { code: "Enter the code from your authenticator app, or a recovery code." });
      return;
    }
    run(event.submitter, async () => {
      try {
        const tokens = await api.signInMfa(mfaToken, secondFactorOf(typed));
        leaveSecondFactor();
        await signedIn(tokens, `Signed in as ${tokens.id}.`);
      } catch (error) {
        ui.mfaCode.value = "";
        throw error;
      }
    }, ui.mfaForm);
  });

  $("mfa-cancel").addEventListener("click", () => {
    leaveSecondFactor();
    say("");
  });

  const withPasskey = (button, login) =>
    run(button, async () => {
      let tokens;
      try {
        tokens = await api.signInPasskey(login);
      } catch (error) {
        throw passkeyError(error);
      }
      leaveSecondFactor();
      await signedIn(tokens, `Signed in as ${tokens.id} with a passkey.`);
    });

  ui.passkeySignIn.addEventListener("click", (event) => withPasskey(event.currentTarget, ui.loginId.value.trim()));
  ui.mfaPasskey.addEventListener("click", (event) => withPasskey(event.currentTarget, ui.loginId.value.trim()));

  // --- the authenticator app -------------------------------------------------

  async function load() {
    const [factors, keys] = await Promise.all([api.factors(), api.passkeys()]);
    ui.totpState.textContent = factors.totp
      ? `On: signing in asks for a code. ${factors.recovery_codes_left} recovery code${factors.recovery_codes_left === 1 ? "" : "s"} left.`
      : "Off: your password alone signs you in.";
    ui.totpSetup.hidden = factors.totp;
    ui.totpOff.hidden = !factors.totp;
    ui.deleteCode.hidden = !factors.totp;
    if (factors.totp) ui.totpEnrol.hidden = true;
    showPasskeys(keys.items);
  }

  ui.totpSetup.addEventListener("click", (event) => {
    run(event.currentTarget, async () => {
      const begun = await api.beginTotp();
      // An <img> shows the SVG without running anything in it.
      ui.totpQr.src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(begun.qr_svg)}`;
      ui.totpSecret.textContent = begun.secret.replace(/(.{4})/g, "$1 ").trim();
      clearFields(ui.totpEnrol);
      ui.totpEnrol.hidden = false;
      ui.totpSetup.hidden = true;
      ui.totpCode.value = "";
      ui.totpCode.focus();
    });
  });

  $("totp-enrol-cancel").addEventListener("click", () => {
    ui.totpEnrol.hidden = true;
    ui.totpSetup.hidden = false;
  });

  ui.totpEnrol.addEventListener("submit", (event) => {
    event.preventDefault();
    const second = secondFactorOf(ui.totpCode.value);
    if (!second.code) {
      markFields(ui.totpEnrol, { code: "Enter the 6 digits your authenticator app shows." });
      return;
    }
    run(event.submitter, async () => {
      const done = await api.confirmTotp(second.code);
      ui.totpEnrol.hidden = true;
      ui.recoveryCodes.replaceChildren(
        ...done.recovery_codes.map((code) => {
          const item = document.createElement("li");
          item.textContent = code;
          return item;
        }),
      );
      ui.recovery.hidden = false;
      say("The authenticator app is on. Save your recovery codes now.");
      await load();
    }, ui.totpEnrol);
  });

  $("recovery-done").addEventListener("click", () => {
    ui.recoveryCodes.replaceChildren();
    ui.recovery.hidden = true;
  });

  ui.totpOff.addEventListener("submit", (event) => {
    event.preventDefault();
    const password = ui.totpOffPassword.value;
    const typed = ui.totpOffCode.value.trim();
    const missing = {};
    if (!password) missing.current_password = "Enter your password.";
    if (!typed) missing.code = "Enter a code from the app, or a recovery code.";
    if (markFields(ui.totpOff, missing)) return;
    run(event.submitter, async () => {
      await api.disableTotp(password, secondFactorOf(typed));
      ui.totpOffPassword.value = "";
      ui.totpOffCode.value = "";
      say("The authenticator app is off; its recovery codes no longer work.");
      await load();
    }, ui.totpOff);
  });

  // --- passkeys ----------------------------------------------------------------

  function showPasskeys(items) {
    ui.passkeys.replaceChildren(
      ...items.map((key) => {
        const item = document.createElement("li");
        const name = document.createElement("span");
        name.textContent = key.name;
        const when = document.createElement("span");
        when.className = "hint";
        when.textContent = key.last_used_at ? ` last used ${new Date(key.last_used_at).toLocaleString()}` : " not used yet";
        const rename = document.createElement("button");
        rename.type = "button";
        rename.className = "secondary";
        rename.textContent = "Rename";
        rename.setAttribute("aria-label", `Rename passkey ${key.name}`);
        rename.addEventListener("click", () => {
          const wanted = prompt("A new name for this passkey", key.name);
          if (wanted === null || !wanted.trim()) return;
          run(rename, async () => {
            await api.renamePasskey(key.id, wanted.trim());
            await load();
          });
        });
        const remove = document.createElement("button");
        remove.type = "button";
        remove.className = "danger";
        remove.textContent = "Delete";
        remove.setAttribute("aria-label", `Delete passkey ${key.name}`);
        remove.addEventListener("click", () => {
          if (!confirm(`Delete the passkey "${key.name}"? It will no longer sign you in.`)) return;
          run(remove, async () => {
            await api.deletePasskey(key.id);
            say(`The passkey ${key.name} is deleted.`);
            await load();
          });
        });
        item.append(name, when, rename, remove);
        return item;
      }),
    );
  }

  ui.passkeyAdd.addEventListener("click", (event) => {
    run(event.currentTarget, async () => {
      let added;
      try {
        added = await api.addPasskey();
      } catch (error) {
        throw passkeyError(error);
      }
      say(`Passkey added (${added.name}). Next time, sign in with it instead of your password.`);
      await load();
    });
  });

  return {
    load,
    // Called by the sign-in form: true when the error was the second step's start.
    handleSignInError(error) {
      if (error instanceof ApiError && error.code === "mfa_required" && error.details && error.details.mfa_token) {
        askSecondFactor(error.details);
        return true;
      }
      return false;
    },
    reset() {
      leaveSecondFactor();
      ui.totpEnrol.hidden = true;
      ui.recovery.hidden = true;
      ui.recoveryCodes.replaceChildren();
      ui.passkeys.replaceChildren();
    },
    secondFactor() {
      const typed = ui.deleteCode.value.trim();
      return ui.deleteCode.hidden || !typed ? {} : secondFactorOf(typed);
    },
  };
}
