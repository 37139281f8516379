/*
 * klaviyo.js as the Klaviyo emulator serves it: a small stand-in for Klaviyo's onsite script, so a
 * page pointed at the emulator behaves as it would with Klaviyo. It is not Klaviyo's code.
 *
 * What it implements is the documented surface of the `klaviyo` object
 * (https://developers.klaviyo.com/en/docs/introduction_to_the_klaviyo_object):
 *   klaviyo.identify(properties[, callback])        -> Promise of the identified properties
 *   klaviyo.track(metric[, properties][, callback]) -> Promise of true once Klaviyo took the event
 *   klaviyo.push([method, ...args[, callback]])     -> undefined; the callback gets the result
 * and the loader stub's queue: until this script runs, the stub Klaviyo documents for the page
 * keeps every call in window._klOnsite as [method, ...args, callback]; they are run here in order.
 * identify takes the keys the docs list (email, phone_number, first_name, last_name, title,
 * organization); any other key is a custom profile property.
 *
 * What it sends is NOT documented: Klaviyo does not publish the HTTP calls its own script makes.
 * This one uses the spec's client operations, with the public key as company_id and the revision
 * header the spec requires, each request sent at the call (keepalive, so a visitor who moves on at
 * once loses nothing; they may arrive in any order, each complete in itself):
 *   identify -> POST /client/profiles (create_client_profile), once an e-mail is known;
 *   track    -> POST /client/events   (create_client_event), its profile everything identified
 *               so far on this page; the property $event_id is sent as the event's unique_id and
 *               $value as its value, so a page and the server can name the same event alike.
 * kl_sync.onsite.requests builds the same bodies for the demo's simulated browsers, and
 * tests/onsite/test_in_chromium.py checks in Chromium that both agree.
 */
(function () {
  "use strict";
  var API = "__API__";            // where the emulator answers (filled in when it serves this file)
  var COMPANY_ID = "__COMPANY__"; // the public key in the loader's URL
  var REVISION = "__REVISION__";
  var IDENTIFIERS = ["email", "phone_number", "first_name", "last_name", "title", "organization"];
  var EVENT_ATTRIBUTES = { $event_id: "unique_id", $value: "value" };

  if (window.__klSyncOnsite) {
    return; // loaded twice: the first copy already drains the queue
  }
  Object.defineProperty(window, "__klSyncOnsite", { value: COMPANY_ID });

  var profile = {};    // identifier attributes identified so far
  var custom = {};     // custom properties identified so far

  function profileResource() {
    var attributes = Object.assign({}, profile);
    if (Object.keys(custom).length) {
      attributes.properties = Object.assign({}, custom);
    }
    return { type: "profile", attributes: attributes };
  }

  // Browsers refuse a keepalive request whose body is over 64 KiB (the Fetch standard's limit on
  // what a page may leave in flight); a larger one is sent as a plain request.
  var KEEPALIVE_BYTES = 65536;

  // Sent now, not after the previous answer: a page the visitor leaves at once keeps only requests
  // already on their way. Resolves true when Klaviyo answered 202.
  function post(path, body) {
    var text = JSON.stringify(body);
    return fetch(API + path + "?company_id=" + encodeURIComponent(COMPANY_ID), {
      method: "POST",
      headers: { "content-type": "application/vnd.api+json", revision: REVISION },
      body: text,
      keepalive: new Blob([text]).size <= KEEPALIVE_BYTES, // then the request outlives the page
    }).then(function (answer) {
      if (answer.status !== 202) {
        console.warn("klaviyo.js: " + path + " answered " + answer.status);
      }
      return answer.status === 202;
    }, function (error) {
      console.warn("klaviyo.js: " + path + " failed: " + error);
      return false;
    });
  }

  function identify(properties) {
    Object.keys(properties || {}).forEach(function (key) {
      (IDENTIFIERS.indexOf(key) >= 0 ? profile : custom)[key] = properties[key];
    });
    var identified = Object.assign({}, profile, custom);
    if (typeof profile.email !== "string" || !profile.email) {
      return Promise.resolve(identified); // kept for later calls; nothing to name a profile by yet
    }
    return post("/client/profiles", { data: profileResource() }).then(function () {
      return identified;
    });
  }

  function track(metric, properties) {
    if (typeof profile.email !== "string" || !profile.email) {
      console.warn("klaviyo.js: track(" + JSON.stringify(metric) + ") before identify with an email; not sent");
      return Promise.resolve(false);
    }
    var attributes = { properties: {}, time: new Date().toISOString() };
    Object.keys(properties || {}).forEach(function (key) {
      if (EVENT_ATTRIBUTES.hasOwnProperty(key)) {
        var value = properties[key];
        if (value !== null && value !== undefined) {
          attributes[EVENT_ATTRIBUTES[key]] = key === "$event_id" ? String(value) : value;
        }
      } else {
        attributes.properties[key] = properties[key];
      }
    });
    attributes.metric = { data: { type: "metric", attributes: { name: metric } } };
    attributes.profile = { data: profileResource() };
    return post("/client/events", { data: { type: "event", attributes: attributes } });
  }

  var METHODS = { identify: identify, track: track };

  // One queued or pushed call: [method, ...args] with an optional trailing callback.
  function run(entry) {
    var args = Array.prototype.slice.call(entry);
    var method = args.shift();
    var callback = typeof args[args.length - 1] === "function" ? args.pop() : null;
    var call = METHODS[method];
    var result = call
      ? call.apply(null, args)
      : (console.warn("klaviyo.js (kl-sync emulator): " + method + " is not implemented"), Promise.resolve(undefined));
    if (callback) {
      result.then(callback);
    }
    return result;
  }

  function push() {
    Array.prototype.forEach.call(arguments, run);
  }

  var queued = Array.isArray(window._klOnsite) ? window._klOnsite : [];
  // The stub looks window._klOnsite up on every call, so calls made after this point run at once.
  window._klOnsite = { push: push };
  window.klaviyo = {
    identify: function () { return run(["identify"].concat(Array.prototype.slice.call(arguments))); },
    track: function () { return run(["track"].concat(Array.prototype.slice.call(arguments))); },
    push: push,
  };
  queued.forEach(run);
})();
