/** @odoo-module **/

import { Component, onWillStart, onWillUnmount, useState } from "@odoo/owl";
import { browser } from "@web/core/browser/browser";
import { deserializeDateTime, formatDateTime } from "@web/core/l10n/dates";
import { _t } from "@web/core/l10n/translation";
import { registry } from "@web/core/registry";
import { useService } from "@web/core/utils/hooks";
import { Layout } from "@web/search/layout";
import { standardActionServiceProps } from "@web/webclient/actions/action_service";
import { formatInteger } from "@web/views/fields/formatters";

// While a permit sync runs, the figures (and its progress) reload this often.
const SYNC_POLL_MS = 5000;

/**
 * SICANTIK > Dashboard: expiry figures, holders, sync health and reminders.
 *
 * All figures come from one server call (sicantik.dashboard
 * get_dashboard_data); each carries the window action of the list it
 * stands for, so a click opens exactly what was counted. The server also
 * gives each expiry state its colour (a decoration name), the one the
 * permit views use.
 */
export class SicantikDashboard extends Component {
    static template = "sicantik_connector.Dashboard";
    static components = { Layout };
    static props = { ...standardActionServiceProps };

    setup() {
        this.orm = useService("orm");
        this.actionService = useService("action");
        this.state = useState({ data: null, loading: true, configId: false });
        this.pollTimer = null;
        onWillStart(() => this.load());
        onWillUnmount(() => browser.clearTimeout(this.pollTimer));
    }

    get display() {
        return { controlPanel: {} };
    }

    async load() {
        browser.clearTimeout(this.pollTimer);
        this.state.loading = true;
        this.state.data = await this.orm.call("sicantik.dashboard", "get_dashboard_data", [], {
            config_id: this.state.configId || false,
        });
        this.state.loading = false;
        if (this.state.data.sync) {
            this.pollTimer = browser.setTimeout(() => this.load(), SYNC_POLL_MS);
        }
    }

    onConnectorChange(ev) {
        this.state.configId = parseInt(ev.target.value, 10) || false;
        this.load();
    }

    open(figure) {
        if (figure && figure.action) {
            this.actionService.doAction(figure.action);
        }
    }

    /** Bar height or width in percent of the largest value (at least a sliver). */
    share(count, items) {
        const max = Math.max(...items.map((item) => item.count), 1);
        return count ? Math.max(3, Math.round((100 * count) / max)) : 0;
    }

    number(value) {
        return formatInteger(value || 0);
    }

    when(value) {
        return value ? formatDateTime(deserializeDateTime(value)) : "";
    }

    /** The class Odoo's badge widget gives a decoration, for the same colour. */
    decorationClass(decoration) {
        if (!decoration) {
            return "";
        }
        return decoration === "muted" ? "text-bg-300" : `text-bg-${decoration}`;
    }

    // English has a singular and a plural; Indonesian translates both alike.
    permitsText(count) {
        const value = this.number(count);
        return count === 1 ? _t("%(count)s permit", { count: value }) : _t("%(count)s permits", { count: value });
    }

    typesText(count) {
        const value = this.number(count);
        return count === 1 ? _t("%(count)s type", { count: value }) : _t("%(count)s types", { count: value });
    }

    otherTypesText(types) {
        const value = this.number(types.others_count);
        return types.others_count === 1
            ? _t("%(count)s other type", { count: value })
            : _t("%(count)s other types", { count: value });
    }

    runsText(count) {
        const value = this.number(count);
        return count === 1 ? _t("%(count)s run", { count: value }) : _t("%(count)s runs", { count: value });
    }

    requestsText(count) {
        const value = this.number(count);
        return count === 1 ? _t("%(count)s request", { count: value }) : _t("%(count)s requests", { count: value });
    }

    syncText(sync) {
        const values = { done: this.number(sync.done), total: this.number(sync.total) };
        return sync.total
            ? _t("%(done)s of %(total)s rows of the permit list read", values)
            : _t("%(done)s rows of the permit list read", values);
    }

    get healthTitle() {
        return _t("Last %(days)s days", { days: this.state.data.health.days });
    }
}

registry.category("actions").add("sicantik_connector.dashboard", SicantikDashboard);
