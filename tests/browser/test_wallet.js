// A test wallet injected into the page before it loads (Playwright init script): an EIP-1193
// provider, announced through EIP-6963, that signs nothing itself but forwards every request to
// Anvil, whose accounts are unlocked. The test controls it through window.__testWallet:
//   refuse(method)   the next request of `method` fails with code 4001, as when a user says no
//   chainId          what eth_chainId answers (a wrong chain until wallet_switchEthereumChain)
// Its settings come from window.__testWalletSettings = {rpcUrl, account, chainId, startChainId,
// legacy, second}: chainId is Anvil's, the one chain it can switch to; it starts on startChainId; legacy
// makes it an older wallet, only set as window.ethereum and never announced.
(() => {
  const settings = window.__testWalletSettings;
  const listeners = {};
  const wallet = { chainId: settings.startChainId, refusals: new Set(), requests: [] };
  let nextId = 1;

  function emit(event, value) {
    for (const fn of listeners[event] || []) fn(value);
  }

  async function forward(method, params) {
    const response = await fetch(settings.rpcUrl, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: nextId++, method, params: params || [] }),
    });
    const body = await response.json();
    if (body.error) {
      const error = new Error(body.error.message);
      error.code = body.error.code;
      error.data = body.error.data;
      throw error;
    }
    return body.result;
  }

  const provider = {
    isTestWallet: true,
    async request({ method, params }) {
      wallet.requests.push(method);
      if (wallet.refusals.has(method)) {
        wallet.refusals.delete(method);
        const error = new Error("User rejected the request.");
        error.code = 4001;
        throw error;
      }
      switch (method) {
        case "eth_requestAccounts":
        case "eth_accounts":
          return [settings.account];
        case "eth_chainId":
          return wallet.chainId;
        case "net_version":
          return String(parseInt(wallet.chainId, 16));
        case "wallet_switchEthereumChain": {
          const wanted = params[0].chainId;
          if (parseInt(wanted, 16) !== parseInt(settings.chainId, 16)) {
            const error = new Error(`Unrecognized chain ID ${wanted}`);
            error.code = 4902;
            throw error;
          }
          wallet.chainId = settings.chainId;
          emit("chainChanged", wallet.chainId);
          return null;
        }
        case "eth_sendTransaction":
          if (wallet.chainId !== settings.chainId) {
            const error = new Error("the wallet is on another chain");
            error.code = 4901;
            throw error;
          }
          return forward(method, params);
        default:
          return forward(method, params);
      }
    },
    on(event, fn) {
      (listeners[event] = listeners[event] || []).push(fn);
    },
    removeListener(event, fn) {
      listeners[event] = (listeners[event] || []).filter((f) => f !== fn);
    },
  };

  window.__testWallet = {
    refuse(method) {
      wallet.refusals.add(method);
    },
    get chainId() {
      return wallet.chainId;
    },
    requests: wallet.requests,
  };

  const detail = Object.freeze({
    info: {
      uuid: "2f0e1c9a-5b7d-4c1e-9d1a-ce0b71d9e001",
      name: "Test Wallet",
      icon: "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E",
      rdns: "org.ce-bridge.test-wallet",
    },
    provider,
  });
  if (settings.legacy) {
    window.ethereum = provider; // an older wallet: no EIP-6963, only the injected global
    return;
  }
  // With settings.second, another wallet is announced too (one that refuses everything), so the
  // page has to let the user choose.
  const other = Object.freeze({
    info: { ...detail.info, uuid: "7c0d6a4e-1f2b-4b8e-a1c3-0e5d2f9b8a77", name: "Other Wallet", rdns: "org.example.other" },
    provider: {
      async request() {
        const error = new Error("User rejected the request.");
        error.code = 4001;
        throw error;
      },
      on() {},
      removeListener() {},
    },
  });
  const announce = () => {
    window.dispatchEvent(new CustomEvent("eip6963:announceProvider", { detail }));
    if (settings.second) window.dispatchEvent(new CustomEvent("eip6963:announceProvider", { detail: other }));
  };
  window.addEventListener("eip6963:requestProvider", announce);
  announce();
})();
