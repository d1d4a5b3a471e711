-- A neutralized copy of the database must never call the SICANTIK server.
-- Archived, and pointed at a name that never resolves (RFC 2606), so that
-- reactivating a connector or pressing a test button cannot reach it either.
UPDATE sicantik_config
   SET active = false,
       api_url = 'https://sicantik.neutralized.invalid/backoffice/api';
UPDATE ir_cron SET active = false
 WHERE id IN (SELECT res_id FROM ir_model_data
               WHERE module = 'sicantik_connector' AND model = 'ir.cron');
-- ...nor any WhatsApp gateway: credentials blanked, every provider log-only.
UPDATE sicantik_whatsapp_provider
   SET api_token = NULL, api_url = NULL, webhook_headers = NULL,
       meta_phone_number_id = NULL, provider_type = 'log';
-- Webhooks too: new path tokens nobody registered, secrets blanked.
UPDATE sicantik_whatsapp_provider
   SET webhook_token = md5(random()::text || id::text) || md5(random()::text),
       webhook_secret = NULL, meta_verify_token = NULL;
