// The browser's WebAuthn calls with the service's options in their JSON form (binary fields base64url)
// and the credential sent back the same way, as PublicKeyCredential.toJSON() gives it. Browsers that
// lack the JSON helpers (parse…OptionsFromJSON, toJSON) get the same conversion done here.

export const passkeysSupported = () => typeof window.PublicKeyCredential === "function";

export async function createPasskey(options) {
  const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON
    ? PublicKeyCredential.parseCreationOptionsFromJSON(options)
    : {
        ...options,
        challenge: fromB64url(options.challenge),
        user: { ...options.user, id: fromB64url(options.user.id) },
        excludeCredentials: (options.excludeCredentials || []).map(withBinaryId),
      };
  return asJSON(await navigator.credentials.create({ publicKey }));
}

export async function getPasskey(options) {
  const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON
    ? PublicKeyCredential.parseRequestOptionsFromJSON(options)
    : {
        ...options,
        challenge: fromB64url(options.challenge),
        allowCredentials: (options.allowCredentials || []).map(withBinaryId),
      };
  return asJSON(await navigator.credentials.get({ publicKey }));
}

function asJSON(credential) {
  if (typeof credential.toJSON === "function") return credential.toJSON();
  const response = {};
  for (const name of ["clientDataJSON", "attestationObject", "authenticatorData", "signature", "userHandle"]) {
    if (credential.response[name]) response[name] = toB64url(credential.response[name]);
  }
  if (credential.response.getTransports) response.transports = credential.response.getTransports();
  return {
    id: credential.id,
    rawId: toB64url(credential.rawId),
    type: credential.type,
    response,
    clientExtensionResults: credential.getClientExtensionResults(),
    authenticatorAttachment: credential.authenticatorAttachment,
  };
}

function withBinaryId(descriptor) {
  return { ...descriptor, id: fromB64url(descriptor.id) };
}

function fromB64url(text) {
  const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
  return Uint8Array.from(atob(base64 + "=".repeat((4 - (base64.length % 4)) % 4)), (c) => c.charCodeAt(0));
}

function toB64url(buffer) {
  let text = "";
  for (const byte of new Uint8Array(buffer)) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}
