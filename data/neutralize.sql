-- A neutralized copy of the database must never call the SICANTIK server.
UPDATE sicantik_config SET active = false;
UPDATE ir_cron SET active = false
 WHERE id IN (SELECT res_id FROM ir_model_data
               WHERE module = 'sicantik_connector' AND model = 'ir.cron');
