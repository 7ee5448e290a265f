import asyncio
import os

import discord

from botmon.reporter import BotmonReporter

bot = discord.Client(intents=discord.Intents.default(), enable_debug_events=True)
url, key = os.environ["BOTMON_URL"], os.environ["BOT_API_KEY"]


async def main() -> None:
    async with bot, BotmonReporter(bot, url, api_key=key):
        await bot.start(os.environ["DISCORD_TOKEN"])


asyncio.run(main())
