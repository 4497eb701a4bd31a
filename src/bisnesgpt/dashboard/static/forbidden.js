/* An operators-only page seen by a company user: nothing to load; the live indicator still works. */
"use strict";
BG.load = async function () {};
